//! The API's one error shape, `{"error": {"code": "...", "message": "..."}}`, and the stable
//! code of each failure.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use warden_host::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds to wait before retrying (429 and some 503s).
    pub retry_after: Option<u64>,
    /// More fields beside `code` and `message` (the run id, the limit hit).
    pub extra: serde_json::Map<String, Json>,
    /// A recorded answer replayed whole instead (an idempotency key used again).
    pub replayed: Option<std::sync::Arc<Json>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            extra: serde_json::Map::new(),
            replayed: None,
        }
    }

    /// The answer a finished run gave, replayed with its status and an `Idempotent-Replay`
    /// header.
    pub fn replay(status: u16, body: std::sync::Arc<Json>) -> Self {
        let mut error = ApiError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            "",
            "",
        );
        error.replayed = Some(body);
        error
    }

    pub fn with(mut self, key: &str, value: Json) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The body this error answers with.
    pub fn body(&self) -> Json {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        for (key, value) in &self.extra {
            error.insert(key.clone(), value.clone());
        }
        json!({ "error": error })
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(body) = &self.replayed {
            let mut response = (self.status, axum::Json(body.as_ref().clone())).into_response();
            response
                .headers_mut()
                .insert("idempotent-replay", HeaderValue::from_static("true"));
            return response;
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The code of a limit: `limit_` and its name, `table elements` as `table_elements`.
pub fn limit_code(kind: warden_host::LimitKind) -> String {
    format!("limit_{}", kind.name().replace([' ', '-'], "_"))
}

/// How a run's failure reaches the caller: a bad input is 400, a limit or the node's own
/// failure 422, the host's trouble 5xx.
pub fn run_error(error: &Error) -> ApiError {
    let (status, code) = match error {
        Error::Input(_) => (StatusCode::BAD_REQUEST, "invalid_input".to_string()),
        Error::Context(_) => (StatusCode::BAD_REQUEST, "invalid_context".into()),
        Error::UnknownNode { .. } => (StatusCode::NOT_FOUND, "unknown_node".into()),
        Error::AmbiguousNode(_) => (StatusCode::BAD_REQUEST, "ambiguous_node".into()),
        Error::Limit { kind, .. } => (StatusCode::UNPROCESSABLE_ENTITY, limit_code(*kind)),
        Error::NodeFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "node_failed".into()),
        Error::Trapped(_) => (StatusCode::UNPROCESSABLE_ENTITY, "node_trapped".into()),
        Error::InvalidOutput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_output".into()),
        Error::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy".into()),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into()),
        Error::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage".into()),
        Error::Callback(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal".into()),
        Error::Refused(_)
        | Error::Component(_)
        | Error::InvalidDescription(_)
        | Error::InvalidLimits(_)
        | Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal".into()),
    };
    let mut api = ApiError::new(status, code, error.to_string());
    if let Error::Limit { kind, .. } = error {
        api = api.with("limit", json!(kind.name()));
    }
    if matches!(error, Error::Busy(_) | Error::Unavailable(_)) {
        api = api.retry_after(1);
    }
    api
}

/// The outcome label of a run for metrics and records.
pub fn outcome(error: Option<&Error>) -> &'static str {
    match error {
        None => "ok",
        Some(
            Error::Input(_)
            | Error::Context(_)
            | Error::UnknownNode { .. }
            | Error::AmbiguousNode(_),
        ) => "bad_input",
        Some(Error::Limit { .. }) => "limit",
        Some(Error::NodeFailed(_)) => "node_failed",
        Some(Error::Trapped(_)) => "node_trapped",
        Some(Error::InvalidOutput(_)) => "invalid_output",
        Some(_) => "host_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_host::LimitKind;

    #[test]
    fn limit_codes_are_stable_identifiers() {
        assert_eq!(limit_code(LimitKind::Memory), "limit_memory");
        assert_eq!(limit_code(LimitKind::TableElements), "limit_table_elements");
        for kind in [
            LimitKind::Memory,
            LimitKind::Fuel,
            LimitKind::Timeout,
            LimitKind::Stack,
            LimitKind::Tables,
            LimitKind::TableElements,
            LimitKind::Memories,
            LimitKind::Instances,
            LimitKind::InputSize,
            LimitKind::OutputSize,
            LimitKind::Files,
            LimitKind::Resources,
        ] {
            let code = limit_code(kind);
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }

    #[test]
    fn a_limit_is_422_with_its_code_and_a_bad_input_400() {
        let error = run_error(&Error::Limit {
            kind: LimitKind::Fuel,
            detail: "out".into(),
        });
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.body()["error"]["code"], "limit_fuel");
        assert_eq!(error.body()["error"]["limit"], "fuel");
        let error = run_error(&Error::NodeFailed("no".into()));
        assert_eq!(
            (error.status, error.code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "node_failed")
        );
    }
}
