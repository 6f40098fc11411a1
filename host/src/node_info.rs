//! What a component says about the nodes it provides.

use crate::value::Value;
use serde::Serialize;
use serde_json::json;

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
