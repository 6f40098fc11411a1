//! Values on pins, their JSON form, and checking inputs against a node's declared pins.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::json;

/// The type of a value, as a pin declares it (`Any` takes every type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Any,
    Boolean,
    Integer,
    Float,
    Text,
    Bytes,
    Json,
}

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            DataType::Any => "any",
            DataType::Boolean => "boolean",
            DataType::Integer => "integer",
            DataType::Float => "float",
            DataType::Text => "text",
            DataType::Bytes => "bytes",
            DataType::Json => "json",
        }
    }
}

/// A value on a pin, in a variable or in a streamed chunk.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// A JSON document, kept as its text.
    Json(String),
}

/// A named value: an input or an output.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: Value,
}

impl Field {
    pub fn new(name: impl Into<String>, value: Value) -> Self {
        Field {
            name: name.into(),
            value,
        }
    }
}

impl Value {
    /// Bytes the value occupies, for the host's size caps.
    pub fn size(&self) -> usize {
        match self {
            Value::Null | Value::Boolean(_) => 1,
            Value::Integer(_) | Value::Float(_) => 8,
            Value::Text(text) | Value::Json(text) => text.len(),
            Value::Bytes(bytes) => bytes.len(),
        }
    }

    pub fn data_type(&self) -> Option<DataType> {
        Some(match self {
            Value::Null => return None,
            Value::Boolean(_) => DataType::Boolean,
            Value::Integer(_) => DataType::Integer,
            Value::Float(_) => DataType::Float,
            Value::Text(_) => DataType::Text,
            Value::Bytes(_) => DataType::Bytes,
            Value::Json(_) => DataType::Json,
        })
    }

    /// The JSON form: bytes become `{"base64": "…"}`, JSON documents are embedded, and floats
    /// that JSON cannot hold (NaN, infinities) become their name as a string.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Boolean(value) => json!(value),
            Value::Integer(value) => json!(value),
            Value::Float(value) if value.is_finite() => json!(value),
            Value::Float(value) => json!(value.to_string()),
            Value::Text(text) => json!(text),
            Value::Bytes(bytes) => json!({ "base64": BASE64.encode(bytes) }),
            Value::Json(text) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
        }
    }

    /// Parses text given on a command line into a value of `data_type`.
    pub fn parse_as(text: &str, data_type: DataType) -> Result<Value, ParseValueError> {
        let value = match data_type {
            DataType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Value::Boolean(true),
                "false" | "no" | "0" => Value::Boolean(false),
                _ => return Err(ParseValueError::NotBoolean(text.to_string())),
            },
            DataType::Integer => Value::Integer(
                text.trim()
                    .parse()
                    .map_err(|_| ParseValueError::NotInteger(text.to_string()))?,
            ),
            DataType::Float => Value::Float(
                text.trim()
                    .parse()
                    .map_err(|_| ParseValueError::NotNumber(text.to_string()))?,
            ),
            DataType::Text => Value::Text(text.to_string()),
            DataType::Bytes => Value::Bytes(text.as_bytes().to_vec()),
            DataType::Json => {
                let parsed: serde_json::Value =
                    serde_json::from_str(text).map_err(|error| ParseValueError::NotJson {
                        text: text.to_string(),
                        error,
                    })?;
                Value::Json(parsed.to_string())
            }
            DataType::Any => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Null) => Value::Null,
                Ok(serde_json::Value::Bool(value)) => Value::Boolean(value),
                Ok(serde_json::Value::Number(number)) => match number.as_i64() {
                    Some(integer) => Value::Integer(integer),
                    None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
                },
                Ok(serde_json::Value::String(text)) => Value::Text(text),
                Ok(other) => Value::Json(other.to_string()),
                Err(_) => Value::Text(text.to_string()),
            },
        };
        Ok(value)
    }
}

impl Value {
    /// A value of `data_type` from its JSON form, as an API caller sends it: the inverse of
    /// [`Value::to_json`]. Bytes are `{"base64": "…"}`; a `json` pin takes any document; an
    /// `any` pin takes null, booleans, numbers and strings as such, and arrays and objects as
    /// JSON documents.
    pub fn from_json(
        json: &serde_json::Value,
        data_type: DataType,
    ) -> Result<Value, ParseValueError> {
        use serde_json::Value as Json;
        let wrong = |expected: &'static str| ParseValueError::WrongJson {
            expected,
            found: json_kind(json),
        };
        Ok(match (data_type, json) {
            (DataType::Json, json) => Value::Json(json.to_string()),
            (DataType::Boolean | DataType::Any, Json::Bool(value)) => Value::Boolean(*value),
            (DataType::Integer, Json::Number(number)) => {
                Value::Integer(number.as_i64().ok_or_else(|| wrong("a whole number"))?)
            }
            (DataType::Float, Json::Number(number)) => {
                Value::Float(number.as_f64().ok_or_else(|| wrong("a number"))?)
            }
            (DataType::Any, Json::Number(number)) => match number.as_i64() {
                Some(integer) => Value::Integer(integer),
                None => Value::Float(number.as_f64().ok_or_else(|| wrong("a number"))?),
            },
            (DataType::Text | DataType::Any, Json::String(text)) => Value::Text(text.clone()),
            (DataType::Bytes, Json::Object(object)) => match object.get("base64") {
                Some(Json::String(text)) if object.len() == 1 => Value::Bytes(
                    BASE64
                        .decode(text)
                        .map_err(|_| ParseValueError::NotBase64)?,
                ),
                _ => return Err(wrong(r#"{"base64": "…"}"#)),
            },
            (DataType::Any, Json::Null) => Value::Null,
            (DataType::Any, json) => Value::Json(json.to_string()),
            (DataType::Boolean, _) => return Err(wrong("true or false")),
            (DataType::Integer, _) => return Err(wrong("a whole number")),
            (DataType::Float, _) => return Err(wrong("a number")),
            (DataType::Text, _) => return Err(wrong("a string")),
            (DataType::Bytes, _) => return Err(wrong(r#"{"base64": "…"}"#)),
        })
    }
}

fn json_kind(json: &serde_json::Value) -> &'static str {
    match json {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Text that does not parse as a value of the type asked for.
#[derive(Debug, thiserror::Error)]
pub enum ParseValueError {
    #[error("`{0}` is not a boolean; write true or false")]
    NotBoolean(String),
    #[error("`{0}` is not a whole number")]
    NotInteger(String),
    #[error("`{0}` is not a number")]
    NotNumber(String),
    #[error("expected {expected}, found {found}")]
    WrongJson {
        expected: &'static str,
        found: &'static str,
    },
    #[error("the base64 text does not decode")]
    NotBase64,
    #[error("`{text}` is not JSON: {error}")]
    NotJson {
        text: String,
        #[source]
        error: serde_json::Error,
    },
}

/// Whether `text` is one JSON document; checked without building it.
pub fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_inputs_take_the_pin_type_and_round_trip() {
        let cases = [
            (json!(true), DataType::Boolean, Value::Boolean(true)),
            (json!(7), DataType::Integer, Value::Integer(7)),
            (json!(1.5), DataType::Float, Value::Float(1.5)),
            (json!("hi"), DataType::Text, Value::Text("hi".into())),
            (
                json!({"base64": "aGk="}),
                DataType::Bytes,
                Value::Bytes(b"hi".to_vec()),
            ),
            (
                json!({"a": [1]}),
                DataType::Json,
                Value::Json(r#"{"a":[1]}"#.into()),
            ),
            (json!(null), DataType::Any, Value::Null),
            (json!([1, 2]), DataType::Any, Value::Json("[1,2]".into())),
        ];
        for (json, data_type, value) in cases {
            assert_eq!(Value::from_json(&json, data_type).unwrap(), value);
            assert_eq!(
                Value::from_json(&value.to_json(), data_type).unwrap(),
                value
            );
        }
        for (json, data_type) in [
            (json!("7"), DataType::Integer),
            (json!(1.5), DataType::Integer),
            (json!(1), DataType::Text),
            (json!("aGk="), DataType::Bytes),
            (json!({"base64": "%%"}), DataType::Bytes),
            (json!({"base64": "aGk=", "x": 1}), DataType::Bytes),
            (json!(null), DataType::Boolean),
        ] {
            assert!(
                Value::from_json(&json, data_type).is_err(),
                "{json} as {data_type:?}"
            );
        }
    }

    #[test]
    fn parsing_by_type() {
        assert_eq!(
            Value::parse_as("true", DataType::Boolean).unwrap(),
            Value::Boolean(true)
        );
        assert_eq!(
            Value::parse_as("42", DataType::Integer).unwrap(),
            Value::Integer(42)
        );
        assert!(Value::parse_as("4.2", DataType::Integer).is_err());
        assert_eq!(
            Value::parse_as("4.5", DataType::Float).unwrap(),
            Value::Float(4.5)
        );
        assert_eq!(
            Value::parse_as("{\"a\": 1}", DataType::Json).unwrap(),
            Value::Json("{\"a\":1}".into())
        );
        assert!(Value::parse_as("{", DataType::Json).is_err());
        assert_eq!(
            Value::parse_as("7", DataType::Any).unwrap(),
            Value::Integer(7)
        );
        assert_eq!(
            Value::parse_as("plain words", DataType::Any).unwrap(),
            Value::Text("plain words".into())
        );
        assert_eq!(
            Value::Bytes(vec![1, 2]).to_json(),
            json!({"base64": "AQI="})
        );
        assert_eq!(Value::Float(f64::NAN).to_json(), json!("NaN"));
    }
}
