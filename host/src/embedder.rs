//! Capabilities the embedder serves: `functions` (host functions it registers), `oauth` and
//! `token` (credentials it holds), `a2ui` (UI documents it renders).

use crate::capability::Capabilities;
use crate::value::Field;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// A host function a node may call by name.
pub type FunctionHandler = Arc<dyn Fn(Vec<Field>) -> Result<Vec<Field>, String> + Send + Sync>;

/// One registered host function and the capabilities a node needs to call it.
#[derive(Clone)]
pub struct HostFunction {
    pub requires: Capabilities,
    pub handler: FunctionHandler,
}

/// The host functions of an embedder, by name.
#[derive(Clone, Default)]
pub struct Functions {
    functions: HashMap<String, HostFunction>,
}

impl Functions {
    /// Registers `name`; a node may call it when it holds `functions` and every one of `requires`.
    pub fn register(
        &mut self,
        name: &str,
        requires: Capabilities,
        handler: impl Fn(Vec<Field>) -> Result<Vec<Field>, String> + Send + Sync + 'static,
    ) {
        self.functions.insert(
            name.to_string(),
            HostFunction {
                requires,
                handler: Arc::new(handler),
            },
        );
    }

    pub(crate) fn get(&self, name: &str) -> Option<&HostFunction> {
        self.functions.get(name)
    }
}

/// An OAuth access token the embedder holds for the run's user.
#[derive(Clone, Debug)]
pub struct OAuthToken {
    pub provider: String,
    pub scopes: Vec<String>,
    pub token: String,
    pub expires_at_ms: Option<u64>,
}

/// An API token for a named service.
#[derive(Clone, Debug)]
pub struct ServiceToken {
    pub service: String,
    pub scopes: Vec<String>,
    pub token: String,
}

/// Credentials for one run. Tokens never appear in logs or errors.
#[derive(Clone, Default)]
pub struct Credentials {
    pub oauth: Vec<OAuthToken>,
    pub tokens: Vec<ServiceToken>,
}

/// Whether `held` covers every scope in `wanted`.
pub(crate) fn covers(held: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|scope| held.contains(scope))
}

/// Called with each UI document a node renders (already validated).
pub type UiSink = Arc<dyn Fn(&Json) + Send + Sync>;

/// The a2ui schema, shipped in docs/ and compiled in.
pub const A2UI_SCHEMA: &str = include_str!("../../docs/a2ui.schema.json");
/// The largest UI document accepted, in bytes.
pub const MAX_UI_BYTES: usize = 256 * 1024;
/// The deepest nesting of a UI document.
pub const MAX_UI_DEPTH: usize = 32;

/// Checks a UI document against the a2ui schema.
pub fn validate_ui(document: &str) -> Result<Json, String> {
    if document.len() > MAX_UI_BYTES {
        return Err(format!(
            "the document is {} bytes; at most {MAX_UI_BYTES}",
            document.len()
        ));
    }
    let value: Json = serde_json::from_str(document)
        .map_err(|error| format!("the document is not JSON: {error}"))?;
    let schema: Json = serde_json::from_str(A2UI_SCHEMA)
        .map_err(|error| format!("the a2ui schema is broken: {error}"))?;
    check(&schema, &schema, &value, "$", 0)?;
    Ok(value)
}

/// A JSON Schema subset: `$ref` (to `#/definitions/…`), `type`, `enum`, `required`,
/// `properties`, `additionalProperties: false`, `items`, `maxItems`, `maxLength`.
fn check(root: &Json, schema: &Json, value: &Json, path: &str, depth: usize) -> Result<(), String> {
    // A widget level costs a few steps (property, array item, $ref).
    if depth > MAX_UI_DEPTH * 4 {
        return Err(format!("{path}: nested deeper than {MAX_UI_DEPTH} levels"));
    }
    if let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
        let name = reference
            .strip_prefix("#/definitions/")
            .ok_or_else(|| format!("unsupported $ref {reference}"))?;
        let target = root
            .get("definitions")
            .and_then(|d| d.get(name))
            .ok_or_else(|| format!("unknown $ref {reference}"))?;
        return check(root, target, value, path, depth + 1);
    }
    if let Some(kind) = schema.get("type").and_then(Json::as_str) {
        let ok = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => false,
        };
        if !ok {
            return Err(format!("{path}: expected {kind}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Json::as_array)
        && !allowed.contains(value)
    {
        return Err(format!(
            "{path}: {value} is not one of {}",
            Json::Array(allowed.clone())
        ));
    }
    if let (Some(max), Some(text)) = (
        schema.get("maxLength").and_then(Json::as_u64),
        value.as_str(),
    ) && text.chars().count() as u64 > max
    {
        return Err(format!("{path}: longer than {max} characters"));
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Json::as_object);
        for required in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = required.as_str()
                && !object.contains_key(name)
            {
                return Err(format!("{path}: `{name}` is required"));
            }
        }
        for (name, field) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => check(
                    root,
                    field_schema,
                    field,
                    &format!("{path}.{name}"),
                    depth + 1,
                )?,
                None if schema.get("additionalProperties") == Some(&Json::Bool(false)) => {
                    return Err(format!("{path}: `{name}` is not allowed here"));
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema.get("maxItems").and_then(Json::as_u64)
            && items.len() as u64 > max
        {
            return Err(format!("{path}: more than {max} items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                check(
                    root,
                    item_schema,
                    item,
                    &format!("{path}[{index}]"),
                    depth + 1,
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_documents_pass() {
        let document = r#"{"version":"0.1","root":{"type":"column","children":[
            {"type":"heading","text":"Hello"},{"type":"input","bind":"name"},{"type":"button","text":"Go","action":"submit"}]}}"#;
        assert!(validate_ui(document).is_ok());
    }

    #[test]
    fn invalid_documents_say_where() {
        let cases = [
            ("not json", "not JSON"),
            (r#"{"root":{"type":"text"}}"#, "`version` is required"),
            (
                r#"{"version":"0.2","root":{"type":"text"}}"#,
                "is not one of",
            ),
            (
                r#"{"version":"0.1","root":{"type":"marquee"}}"#,
                "$.root.type",
            ),
            (
                r#"{"version":"0.1","root":{"type":"text","onclick":"x"}}"#,
                "`onclick` is not allowed",
            ),
            (
                r#"{"version":"0.1","root":{"type":"row","children":[{"type":7}]}}"#,
                "$.root.children[0].type: expected string",
            ),
        ];
        for (document, expected) in cases {
            let error = validate_ui(document).unwrap_err();
            assert!(error.contains(expected), "{document}: {error}");
        }
        let mut deep = String::from(r#"{"version":"0.1","root":"#);
        for _ in 0..60 {
            deep.push_str(r#"{"type":"column","children":["#);
        }
        deep.push_str(r#"{"type":"text"}"#);
        for _ in 0..60 {
            deep.push_str("]}");
        }
        deep.push('}');
        assert!(validate_ui(&deep).unwrap_err().contains("nested deeper"));
        assert!(validate_ui(&"x".repeat(MAX_UI_BYTES + 1)).is_err());
    }

    #[test]
    fn scopes_are_covered_only_in_full() {
        let held = vec!["repo".to_string(), "user".to_string()];
        assert!(covers(&held, &["repo".to_string()]));
        assert!(covers(&held, &[]));
        assert!(!covers(&held, &["repo".to_string(), "admin".to_string()]));
    }
}
