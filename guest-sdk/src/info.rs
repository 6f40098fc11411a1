//! Builders for a node's description and pins.

use crate::{DataType, Direction, NodeInfo, Pin, Range, Value};

impl NodeInfo {
    /// A node called `name` (unique in its component), shown to people as `friendly_name`.
    pub fn new(name: &str, friendly_name: &str) -> Self {
        NodeInfo {
            name: name.to_string(),
            friendly_name: friendly_name.to_string(),
            description: String::new(),
            category: String::new(),
            pins: Vec::new(),
        }
    }

    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_string();
        self
    }

    pub fn category(mut self, category: &str) -> Self {
        self.category = category.to_string();
        self
    }

    /// Adds an input pin.
    pub fn input(mut self, pin: Pin) -> Self {
        self.pins.push(Pin {
            direction: Direction::Input,
            ..pin
        });
        self
    }

    /// Adds an output pin.
    pub fn output(mut self, pin: Pin) -> Self {
        self.pins.push(Pin {
            direction: Direction::Output,
            ..pin
        });
        self
    }
}

impl Pin {
    /// A pin of any type; [`NodeInfo::input`] or [`NodeInfo::output`] sets its direction.
    pub fn new(name: &str, data_type: DataType) -> Self {
        Pin {
            name: name.to_string(),
            description: String::new(),
            direction: Direction::Input,
            data_type,
            default: None,
            valid_values: Vec::new(),
            range: None,
        }
    }

    pub fn text(name: &str) -> Self {
        Self::new(name, DataType::Text)
    }

    pub fn integer(name: &str) -> Self {
        Self::new(name, DataType::Integer)
    }

    pub fn float(name: &str) -> Self {
        Self::new(name, DataType::Float)
    }

    pub fn boolean(name: &str) -> Self {
        Self::new(name, DataType::Boolean)
    }

    pub fn bytes(name: &str) -> Self {
        Self::new(name, DataType::Bytes)
    }

    pub fn json(name: &str) -> Self {
        Self::new(name, DataType::Json)
    }

    pub fn any(name: &str) -> Self {
        Self::new(name, DataType::Any)
    }

    pub fn describe(mut self, description: &str) -> Self {
        self.description = description.to_string();
        self
    }

    /// The value an input takes when none is given; without one the input is required.
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// The only values the pin accepts.
    pub fn one_of<V: Into<Value>>(mut self, values: impl IntoIterator<Item = V>) -> Self {
        self.valid_values = values.into_iter().map(Into::into).collect();
        self
    }

    /// An inclusive range numeric values must fall in.
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.range = Some(Range { min, max });
        self
    }
}
