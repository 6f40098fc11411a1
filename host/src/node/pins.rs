//! The checks of values against a node's pins: the inputs a caller gives (names, types,
//! ranges, allowed values, defaults) and the outputs a node returns.

use crate::node::info::{Direction, NodeInfo};
use crate::node::value::{DataType, Field, Value, is_json};

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
    use crate::node::value::Value;

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
}
