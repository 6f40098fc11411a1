//! Values on pins, their JSON form, and checking inputs against a node's declared pins.

use crate::node::info::{DataType, Direction, NodeInfo};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

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

/// Text that does not parse as a value of the type asked for.
#[derive(Debug, thiserror::Error)]
pub enum ParseValueError {
    #[error("`{0}` is not a boolean; write true or false")]
    NotBoolean(String),
    #[error("`{0}` is not a whole number")]
    NotInteger(String),
    #[error("`{0}` is not a number")]
    NotNumber(String),
    #[error("`{text}` is not JSON: {error}")]
    NotJson {
        text: String,
        #[source]
        error: serde_json::Error,
    },
}

/// Outputs that do not fit the node's output pins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("output `{0}` was returned twice")]
    Twice(String),
    #[error("`{pin}` is not an output pin of `{node}`")]
    UnknownPin { pin: String, node: String },
    #[error("output `{pin}` is declared {declared} but the node returned {found}")]
    WrongType {
        pin: String,
        declared: &'static str,
        found: &'static str,
    },
    #[error("output `{0}` is not valid JSON")]
    InvalidJson(String),
}

/// An input that does not fit the node's pins.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("node `{node}` has no input pin `{pin}`; its inputs are: {known}")]
    UnknownPin {
        node: String,
        pin: String,
        known: String,
    },
    #[error("input `{pin}` was given twice")]
    Duplicate { pin: String },
    #[error("input `{pin}` expects {expected}, not {found}")]
    WrongType {
        pin: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("input `{pin}` must be between {min} and {max}")]
    OutOfRange { pin: String, min: f64, max: f64 },
    #[error("input `{pin}` must be one of: {allowed}")]
    NotAllowed { pin: String, allowed: String },
    #[error("input `{pin}` is required and has no default")]
    Missing { pin: String },
    #[error("input `{pin}` is not valid JSON")]
    InvalidJson { pin: String },
}

/// Whether `text` is one JSON document; checked without building it.
pub fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Checks what a node returned against its output pins: every name is an output pin, once,
/// with a value of the pin's type, and `json` values are JSON. The message says what is wrong.
pub fn check_outputs(node: &NodeInfo, outputs: &[Field]) -> Result<(), OutputError> {
    let mut seen = std::collections::HashSet::with_capacity(outputs.len());
    for field in outputs {
        if !seen.insert(field.name.as_str()) {
            return Err(OutputError::Twice(field.name.clone()));
        }
        let Some(pin) = node
            .pins
            .iter()
            .find(|pin| pin.direction == Direction::Output && pin.name == field.name)
        else {
            return Err(OutputError::UnknownPin {
                pin: field.name.clone(),
                node: node.name.clone(),
            });
        };
        if let Some(found) = field.value.data_type()
            && pin.data_type != DataType::Any
            && found != pin.data_type
        {
            return Err(OutputError::WrongType {
                pin: field.name.clone(),
                declared: pin.data_type.name(),
                found: found.name(),
            });
        }
        if let Value::Json(text) = &field.value
            && !is_json(text)
        {
            return Err(OutputError::InvalidJson(field.name.clone()));
        }
    }
    Ok(())
}

/// Checks `inputs` against the input pins of `node`: names, types, ranges and allowed values.
/// Missing inputs take the pin's default; a missing input without one is an error.
pub fn check_inputs(node: &NodeInfo, inputs: Vec<Field>) -> Result<Vec<Field>, InputError> {
    let pins: Vec<_> = node
        .pins
        .iter()
        .filter(|pin| pin.direction == Direction::Input)
        .collect();
    let mut checked = Vec::with_capacity(pins.len());
    let mut seen = std::collections::HashSet::with_capacity(inputs.len());
    for field in &inputs {
        if !seen.insert(field.name.as_str()) {
            return Err(InputError::Duplicate {
                pin: field.name.clone(),
            });
        }
        if !pins.iter().any(|pin| pin.name == field.name) {
            let known = pins
                .iter()
                .map(|pin| pin.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(InputError::UnknownPin {
                node: node.name.clone(),
                pin: field.name.clone(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known
                },
            });
        }
    }
    for pin in pins {
        let given = inputs
            .iter()
            .find(|field| field.name == pin.name)
            .map(|field| field.value.clone());
        let value = match given.or_else(|| pin.default.clone()) {
            Some(value) => value,
            None => {
                return Err(InputError::Missing {
                    pin: pin.name.clone(),
                });
            }
        };
        if let (Some(found), false) = (value.data_type(), pin.data_type == DataType::Any)
            && found != pin.data_type
        {
            return Err(InputError::WrongType {
                pin: pin.name.clone(),
                expected: pin.data_type.name(),
                found: found.name(),
            });
        }
        if let Value::Json(text) = &value
            && !is_json(text)
        {
            return Err(InputError::InvalidJson {
                pin: pin.name.clone(),
            });
        }
        if let Some(range) = pin.range {
            let number = match value {
                Value::Integer(integer) => Some(integer as f64),
                Value::Float(float) => Some(float),
                _ => None,
            };
            if let Some(number) = number
                && !(range.min <= number && number <= range.max)
            {
                return Err(InputError::OutOfRange {
                    pin: pin.name.clone(),
                    min: range.min,
                    max: range.max,
                });
            }
        }
        if !pin.valid_values.is_empty() && !pin.valid_values.contains(&value) {
            let allowed = pin
                .valid_values
                .iter()
                .map(|v| v.to_json().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(InputError::NotAllowed {
                pin: pin.name.clone(),
                allowed,
            });
        }
        checked.push(Field::new(pin.name.clone(), value));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::info::{Pin, Range};

    #[test]
    fn outputs_get_the_checks_inputs_get() {
        let mut info = node();
        info.pins.push(Pin::output("doc", DataType::Json));
        let field = |name: &str, value: Value| Field::new(name, value);
        assert_eq!(
            check_outputs(&info, &[field("result", Value::Text("x".into()))]),
            Ok(())
        );
        let refused = [
            (
                vec![
                    field("result", Value::Text("a".into())),
                    field("result", Value::Text("b".into())),
                ],
                "returned twice",
            ),
            (
                vec![field("doc", Value::Json("{".into()))],
                "not valid JSON",
            ),
            (
                vec![field("text", Value::Text("x".into()))],
                "not an output pin",
            ),
            (vec![field("result", Value::Integer(1))], "declared text"),
        ];
        for (outputs, expected) in refused {
            let error = check_outputs(&info, &outputs).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        assert_eq!(
            check_outputs(&info, &[field("doc", Value::Json("{\"a\": [1]}".into()))]),
            Ok(())
        );
    }

    fn node() -> NodeInfo {
        NodeInfo {
            name: "n".into(),
            friendly_name: "N".into(),
            description: String::new(),
            category: String::new(),
            pins: vec![
                Pin::input("text", DataType::Text),
                Pin {
                    range: Some(Range {
                        min: 1.0,
                        max: 10.0,
                    }),
                    ..Pin::input("count", DataType::Integer)
                },
                Pin {
                    default: Some(Value::Text("upper".into())),
                    valid_values: vec![Value::Text("upper".into()), Value::Text("lower".into())],
                    ..Pin::input("mode", DataType::Text)
                },
                Pin::output("result", DataType::Text),
            ],
        }
    }

    #[test]
    fn inputs_are_checked_and_defaulted() {
        let checked = check_inputs(
            &node(),
            vec![
                Field::new("text", Value::Text("hi".into())),
                Field::new("count", Value::Integer(3)),
            ],
        )
        .unwrap();
        assert_eq!(checked[2], Field::new("mode", Value::Text("upper".into())));
        let bad = |inputs| check_inputs(&node(), inputs).unwrap_err();
        assert!(matches!(
            bad(vec![
                Field::new("text", Value::Integer(1)),
                Field::new("count", Value::Integer(1))
            ]),
            InputError::WrongType { .. }
        ));
        assert!(matches!(
            bad(vec![
                Field::new("text", Value::Text("a".into())),
                Field::new("count", Value::Integer(11))
            ]),
            InputError::OutOfRange { .. }
        ));
        assert!(matches!(
            bad(vec![Field::new("text", Value::Text("a".into()))]),
            InputError::Missing { .. }
        ));
        assert!(matches!(
            bad(vec![Field::new("result", Value::Text("a".into()))]),
            InputError::UnknownPin { .. }
        ));
        assert!(matches!(
            bad(vec![
                Field::new("text", Value::Text("a".into())),
                Field::new("count", Value::Integer(2)),
                Field::new("mode", Value::Text("sideways".into()))
            ]),
            InputError::NotAllowed { .. }
        ));
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
