//! Host bindings generated from `wit/`, and conversions between them and the library's types.

use crate::node::info::{Direction, NodeInfo, Pin, Range};
use crate::node::value::DataType;
use crate::node::value::{Field, Value};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "warden:node/node-host",
    exports: { default: async },
    // What waits on the network is async (the call already is).
    imports: {
        // Storage and the cache may be across the network (PostgreSQL, in a cluster).
        "warden:node/storage-read.get": async,
        "warden:node/storage-read.exists": async,
        "warden:node/storage-read.list-keys": async,
        "warden:node/storage-write.set": async,
        "warden:node/storage-delete.delete": async,
        "warden:node/cache-read.get": async,
        "warden:node/cache-write.set": async,
        "warden:node/cache-write.remove": async,
        "warden:node/http-get.fetch": async,
        "warden:node/http-write.send": async,
        "warden:node/models.embed": async,
        "warden:node/models.generate": async,
        "warden:node/models.generate-stream": async,
        "warden:node/models.[method]generation.next": async,
        "warden:node/websocket.connect": async,
        "warden:node/websocket.[method]connection.send": async,
        "warden:node/websocket.[method]connection.receive": async,
        "warden:node/websocket.[method]connection.close": async,
        // The embedder's handler runs on a blocking thread, awaited, so a slow handler cannot
        // hold the run past its deadline; a panicking one ends the run (trappable).
        "warden:node/functions.call": async | trappable,
    },
    with: {
        "warden:node/models.generation": crate::caps::models::Generation,
        "warden:node/websocket.connection": crate::caps::websocket::Connection,
    },
});

pub use warden::node::types as wit;

impl From<wit::Value> for Value {
    fn from(value: wit::Value) -> Self {
        match value {
            wit::Value::Null => Value::Null,
            wit::Value::Boolean(value) => Value::Boolean(value),
            wit::Value::Integer(value) => Value::Integer(value),
            wit::Value::Float(value) => Value::Float(value),
            wit::Value::Text(value) => Value::Text(value),
            wit::Value::Bytes(value) => Value::Bytes(value),
            wit::Value::Json(value) => Value::Json(value),
        }
    }
}

impl From<Value> for wit::Value {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => wit::Value::Null,
            Value::Boolean(value) => wit::Value::Boolean(value),
            Value::Integer(value) => wit::Value::Integer(value),
            Value::Float(value) => wit::Value::Float(value),
            Value::Text(value) => wit::Value::Text(value),
            Value::Bytes(value) => wit::Value::Bytes(value),
            Value::Json(value) => wit::Value::Json(value),
        }
    }
}

impl From<wit::Field> for Field {
    fn from(field: wit::Field) -> Self {
        Field {
            name: field.name,
            value: field.value.into(),
        }
    }
}

impl From<Field> for wit::Field {
    fn from(field: Field) -> Self {
        wit::Field {
            name: field.name,
            value: field.value.into(),
        }
    }
}

impl From<wit::NodeInfo> for NodeInfo {
    fn from(info: wit::NodeInfo) -> Self {
        NodeInfo {
            name: info.name,
            friendly_name: info.friendly_name,
            description: info.description,
            category: info.category,
            pins: info.pins.into_iter().map(Pin::from).collect(),
        }
    }
}

impl From<wit::Pin> for Pin {
    fn from(pin: wit::Pin) -> Self {
        Pin {
            name: pin.name,
            description: pin.description,
            direction: match pin.direction {
                wit::Direction::Input => Direction::Input,
                wit::Direction::Output => Direction::Output,
            },
            data_type: match pin.data_type {
                wit::DataType::Any => DataType::Any,
                wit::DataType::Boolean => DataType::Boolean,
                wit::DataType::Integer => DataType::Integer,
                wit::DataType::Float => DataType::Float,
                wit::DataType::Text => DataType::Text,
                wit::DataType::Bytes => DataType::Bytes,
                wit::DataType::Json => DataType::Json,
            },
            default: pin.default.map(Value::from),
            valid_values: pin.valid_values.into_iter().map(Value::from).collect(),
            range: pin.range.map(|range| Range {
                min: range.min,
                max: range.max,
            }),
        }
    }
}

impl From<&crate::node::context::RunContext> for wit::RunContext {
    fn from(context: &crate::node::context::RunContext) -> Self {
        wit::RunContext {
            run_id: context.run_id.clone(),
            app_id: context.app_id.clone(),
            board_id: context.board_id.clone(),
            node_instance_id: context.node_instance_id.clone(),
            user_id: context.user_id.clone(),
            event_id: context.event_id.clone(),
        }
    }
}
