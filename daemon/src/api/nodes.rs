//! `GET /v1/nodes`, `GET /v1/nodes/{name}` and `POST /v1/admin/reload`.

use super::{ApiError, Shared};
use crate::generation::Unresolved;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn list(State(daemon): State<Shared>) -> Json<Value> {
    let generation = daemon.current();
    Json(json!({
        "generation": generation.number,
        "packages": generation.nodes.iter().map(|live| live.describe()).collect::<Vec<_>>(),
    }))
}

/// A package by its name, or the package of a node (`node` or `package/node`).
pub async fn one(
    State(daemon): State<Shared>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = name.map_err(super::path_rejected)?;
    let generation = daemon.current();
    if let Some(live) = generation.package(&name) {
        return Ok(Json(live.describe()));
    }
    match generation.resolve(&name) {
        Ok((live, _)) => Ok(Json(live.describe())),
        Err(unresolved) => Err(unresolved_error(unresolved)),
    }
}

pub fn unresolved_error(unresolved: Unresolved) -> ApiError {
    match unresolved {
        Unresolved::Unknown { name, known } => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_node",
            format!(
                "no node `{}` is loaded; loaded: {}",
                name.chars().take(128).collect::<String>(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ),
        Unresolved::Ambiguous { name, candidates } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "ambiguous_node",
            format!(
                "several packages provide `{name}`: name one of {}",
                candidates.join(", ")
            ),
        )
        .with("candidates", json!(candidates)),
    }
}

pub async fn reload(
    State(daemon): State<Shared>,
    axum::Extension(caller): axum::Extension<super::Caller>,
) -> Result<Json<Value>, ApiError> {
    match daemon.reload(&format!("api:{}", caller.name)).await {
        Ok(generation) => Ok(Json(json!({ "generation": generation }))),
        Err(error) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload_refused",
            format!(
                "the reload was refused and generation {} keeps serving",
                daemon.current().number
            ),
        )
        .with("problems", json!(error.problems()))),
    }
}
