//! What a component says about the nodes it provides.

use crate::node::value::{DataType, Value};
use serde::Serialize;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Input,
    Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pin {
    pub name: String,
    pub description: String,
    pub direction: Direction,
    pub data_type: DataType,
    pub default: Option<Value>,
    pub valid_values: Vec<Value>,
    pub range: Option<Range>,
}

impl Pin {
    pub fn input(name: &str, data_type: DataType) -> Self {
        Pin {
            name: name.into(),
            description: String::new(),
            direction: Direction::Input,
            data_type,
            default: None,
            valid_values: Vec::new(),
            range: None,
        }
    }

    pub fn output(name: &str, data_type: DataType) -> Self {
        Pin {
            direction: Direction::Output,
            ..Pin::input(name, data_type)
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "description": self.description,
            "direction": self.direction,
            "type": self.data_type,
            "default": self.default.as_ref().map(Value::to_json),
            "valid_values": self.valid_values.iter().map(Value::to_json).collect::<Vec<_>>(),
            "range": self.range,
        })
    }
}

/// The most nodes one component may describe.
pub const MAX_NODES: usize = 256;
/// The most pins one node may have.
pub const MAX_PINS: usize = 256;
/// The longest name, friendly name, category or pin name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// The most valid values one pin may list.
pub const MAX_VALID_VALUES: usize = 1024;
/// Bytes of all descriptions of a component together (names, texts and values).
pub const MAX_DESCRIBED_BYTES: usize = 1024 * 1024;

/// A component's description of its nodes beyond the host's bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    #[error("{0} nodes; a component may describe at most {MAX_NODES}")]
    TooManyNodes(usize),
    #[error("{what} is {bytes} bytes; at most {max}")]
    TooLong {
        what: String,
        bytes: usize,
        max: usize,
    },
    #[error("node `{0}` is described twice")]
    NodeTwice(String),
    #[error("node `{node}` has {pins} pins; at most {MAX_PINS}")]
    TooManyPins { node: String, pins: usize },
    #[error("node `{node}` has pin `{pin}` twice")]
    PinTwice { node: String, pin: String },
    #[error("pin `{pin}` of `{node}` lists {values} valid values; at most {MAX_VALID_VALUES}")]
    TooManyValidValues {
        node: String,
        pin: String,
        values: usize,
    },
    #[error("the descriptions take more than {MAX_DESCRIBED_BYTES} bytes")]
    TooLarge,
}

/// Checks what a component says about its nodes against the bounds above, so that what the
/// host keeps for it, and what `describe` and `inspect` show, stays small; and that node names,
/// and pin names within a node and direction, are unique.
pub fn check_descriptions(nodes: &[NodeInfo]) -> Result<(), DescriptionError> {
    if nodes.len() > MAX_NODES {
        return Err(DescriptionError::TooManyNodes(nodes.len()));
    }
    let mut total = 0usize;
    let mut node_names = std::collections::HashSet::new();
    let text = |what: &str, value: &str, max: usize| {
        if value.len() > max {
            Err(DescriptionError::TooLong {
                what: what.to_string(),
                bytes: value.len(),
                max,
            })
        } else {
            Ok(value.len())
        }
    };
    for node in nodes {
        let name: String = node.name.chars().take(64).collect();
        if !node_names.insert(node.name.as_str()) {
            return Err(DescriptionError::NodeTwice(name));
        }
        if node.pins.len() > MAX_PINS {
            return Err(DescriptionError::TooManyPins {
                node: name,
                pins: node.pins.len(),
            });
        }
        total += text("a node name", &node.name, MAX_NAME_BYTES)?
            + text(
                &format!("the friendly name of `{name}`"),
                &node.friendly_name,
                MAX_NAME_BYTES,
            )?
            + text(
                &format!("the category of `{name}`"),
                &node.category,
                MAX_NAME_BYTES,
            )?
            + text(
                &format!("the description of `{name}`"),
                &node.description,
                MAX_DESCRIPTION_BYTES,
            )?;
        let mut pin_names = std::collections::HashSet::new();
        for pin in &node.pins {
            let pin_name: String = pin.name.chars().take(64).collect();
            if !pin_names.insert((pin.direction == Direction::Input, pin.name.as_str())) {
                return Err(DescriptionError::PinTwice {
                    node: name,
                    pin: pin_name,
                });
            }
            if pin.valid_values.len() > MAX_VALID_VALUES {
                return Err(DescriptionError::TooManyValidValues {
                    node: name,
                    pin: pin_name,
                    values: pin.valid_values.len(),
                });
            }
            total += text(
                &format!("a pin name of `{name}`"),
                &pin.name,
                MAX_NAME_BYTES,
            )? + text(
                &format!("the description of pin `{pin_name}` of `{name}`"),
                &pin.description,
                MAX_DESCRIPTION_BYTES,
            )? + pin.default.as_ref().map_or(0, Value::size)
                + pin.valid_values.iter().map(Value::size).sum::<usize>();
        }
        if total > MAX_DESCRIBED_BYTES {
            return Err(DescriptionError::TooLarge);
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub friendly_name: String,
    pub description: String,
    pub category: String,
    pub pins: Vec<Pin>,
}

impl NodeInfo {
    pub fn inputs(&self) -> impl Iterator<Item = &Pin> {
        self.pins
            .iter()
            .filter(|pin| pin.direction == Direction::Input)
    }

    pub fn outputs(&self) -> impl Iterator<Item = &Pin> {
        self.pins
            .iter()
            .filter(|pin| pin.direction == Direction::Output)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "friendly_name": self.friendly_name,
            "description": self.description,
            "category": self.category,
            "pins": self.pins.iter().map(Pin::to_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, pins: Vec<Pin>) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            friendly_name: name.into(),
            description: String::new(),
            category: String::new(),
            pins,
        }
    }

    #[test]
    fn descriptions_within_bounds_pass_and_beyond_are_refused() {
        let pins = vec![
            Pin::input("text", DataType::Text),
            Pin::output("text", DataType::Text),
        ];
        assert_eq!(
            check_descriptions(&[node("a", pins.clone()), node("b", vec![])]),
            Ok(())
        );
        let refused = [
            (
                vec![node("a", vec![]), node("a", vec![])],
                "described twice",
            ),
            (
                vec![node("a", vec![Pin::input("x", DataType::Any); 2])],
                "pin `x` twice",
            ),
            (
                (0..=MAX_NODES)
                    .map(|i| node(&i.to_string(), vec![]))
                    .collect(),
                "at most 256",
            ),
            (
                vec![node(
                    "a",
                    (0..=MAX_PINS)
                        .map(|i| Pin::input(&i.to_string(), DataType::Any))
                        .collect(),
                )],
                "pins; at most",
            ),
            (
                vec![node(&"n".repeat(MAX_NAME_BYTES + 1), vec![])],
                "a node name",
            ),
            (
                vec![NodeInfo {
                    description: "d".repeat(MAX_DESCRIPTION_BYTES + 1),
                    ..node("a", vec![])
                }],
                "the description of `a`",
            ),
            (
                vec![node(
                    "a",
                    vec![Pin {
                        valid_values: vec![Value::Null; MAX_VALID_VALUES + 1],
                        ..Pin::input("x", DataType::Any)
                    }],
                )],
                "valid values",
            ),
            (
                (0..200)
                    .map(|i| {
                        let pins = (0..2)
                            .map(|j| Pin {
                                description: "d".repeat(4000),
                                ..Pin::input(&j.to_string(), DataType::Any)
                            })
                            .collect();
                        node(&i.to_string(), pins)
                    })
                    .collect(),
                "more than 1048576 bytes",
            ),
        ];
        for (nodes, expected) in refused {
            let error = check_descriptions(&nodes).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
