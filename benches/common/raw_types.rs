//! The WIT types of warden's node interface as raw Wasmtime lifts and lowers them: the benches'
//! raw peers call the same component with these (`#[path]`-included by each bench).

// Each bench uses some of them; enum cases are built by lifting the guest's values.
#![allow(dead_code)]

use wasmtime::component::{ComponentType, Lift, Lower};

#[derive(ComponentType, Lift, Lower, Clone)]
#[component(record)]
pub struct RawContext {
    #[component(name = "run-id")]
    pub run_id: String,
    #[component(name = "app-id")]
    pub app_id: String,
    #[component(name = "board-id")]
    pub board_id: String,
    #[component(name = "node-instance-id")]
    pub node_instance_id: String,
    #[component(name = "user-id")]
    pub user_id: String,
    #[component(name = "event-id")]
    pub event_id: String,
}

impl RawContext {
    /// The context warden's `RunContext::for_node` gives a local run of `node`.
    pub fn for_node(node: &str) -> Self {
        RawContext {
            run_id: String::new(),
            app_id: "local".into(),
            board_id: "default".into(),
            node_instance_id: node.into(),
            user_id: "local".into(),
            event_id: String::new(),
        }
    }
}

#[derive(ComponentType, Lift, Lower, Clone)]
#[component(variant)]
pub enum RawValue {
    #[component(name = "null")]
    Null,
    #[component(name = "boolean")]
    Boolean(bool),
    #[component(name = "integer")]
    Integer(i64),
    #[component(name = "float")]
    Float(f64),
    #[component(name = "text")]
    Text(String),
    #[component(name = "bytes")]
    Bytes(Vec<u8>),
    #[component(name = "json")]
    Json(String),
}

#[derive(ComponentType, Lift, Lower, Clone)]
#[component(record)]
pub struct RawField {
    pub name: String,
    pub value: RawValue,
}

#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
pub enum RawLevel {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

#[derive(ComponentType, Lift, Lower, Clone, Copy, PartialEq, Eq, Hash)]
#[component(enum)]
#[repr(u8)]
pub enum RawScope {
    #[component(name = "board")]
    Board,
    #[component(name = "node")]
    Node,
    #[component(name = "user")]
    User,
    #[component(name = "upload")]
    Upload,
    #[component(name = "cache")]
    Cache,
}

#[derive(ComponentType, Lift, Lower, Clone)]
#[component(variant)]
pub enum RawHostError {
    #[component(name = "denied")]
    Denied(String),
    #[component(name = "invalid")]
    Invalid(String),
    #[component(name = "too-large")]
    TooLarge(String),
    #[component(name = "quota-exceeded")]
    QuotaExceeded(String),
    #[component(name = "unavailable")]
    Unavailable(String),
}
