//! Write warden workflow nodes in Rust.
//!
//! A node declares its metadata and pins and turns typed inputs into outputs:
//!
//! ```ignore
//! use warden_sdk::prelude::*;
//!
//! struct Shout;
//!
//! impl Node for Shout {
//!     const NAME: &'static str = "shout";
//!
//!     fn info() -> NodeInfo {
//!         NodeInfo::new(Self::NAME, "Shout")
//!             .description("Upper-cases text")
//!             .input(Pin::text("text"))
//!             .output(Pin::text("loud"))
//!     }
//!
//!     fn run(cx: &mut Context) -> Result<(), NodeError> {
//!         let text: String = cx.input("text")?;
//!         cx.output("loud", text.to_uppercase());
//!         Ok(())
//!     }
//! }
//!
//! warden_sdk::export_nodes!(Shout);
//! ```
//!
//! Each capability is a Cargo feature (`storage-read`, `cache-write`, …). The SDK generates
//! bindings only for the enabled capabilities' WIT worlds, so a node imports nothing else and
//! the host can tell exactly what it needs.

mod info;
mod value;

pub use value::{FromValue, Json};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "warden:node/base",
        pub_export_macro: true,
        default_bindings_module: "warden_sdk::bindings",
    });
}

use bindings::warden::node::types;

pub use types::{
    CacheScope, DataType, Direction, Field, HostError, NodeInfo, Pin, Range, RunContext, Scope,
    Value,
};

/// The one list of the SDK's capabilities: for each, its Cargo feature, the module of its
/// bindings, its WIT world and its interface. Each enabled feature generates bindings for its
/// world that reuse the base world's types, and re-exports the raw interface. A test checks
/// this list against the host's capability table and the SDK's Cargo features.
macro_rules! capabilities {
    ($($feature:literal => $module:ident, $world:literal, $interface:ident;)*) => {
        $(
            #[cfg(feature = $feature)]
            #[doc(hidden)]
            pub mod $module {
                wit_bindgen::generate!({
                    path: "../wit",
                    world: $world,
                    with: { "warden:node/types@0.1.0": crate::bindings::warden::node::types },
                });
            }
            #[cfg(feature = $feature)]
            #[doc = concat!("The raw `", $feature, "` interface (enabled by the `", $feature, "` feature).")]
            pub use $module::warden::node::$interface;
        )*

        /// Every capability the SDK offers, enabled or not: its feature and its WIT world.
        #[doc(hidden)]
        pub const __CAPABILITIES: &[(&str, &str)] = &[$(($feature, $world)),*];

        /// A pointer to the link helper of each enabled capability's bindings. `export_nodes!`
        /// keeps this alive in the node crate: without a reference, the linker may drop the SDK
        /// object that carries a capability world's custom section (rustc inlines the small
        /// import wrappers into the node crate), and the component could not be encoded.
        #[doc(hidden)]
        pub static __CAPABILITY_SECTIONS: &[fn()] = &[
            $(
                #[cfg(feature = $feature)]
                $module::__link_custom_section_describing_imports,
            )*
        ];
    };
}

capabilities! {
    "storage-read" => cap_storage_read, "warden:node/cap-storage-read", storage_read;
    "storage-write" => cap_storage_write, "warden:node/cap-storage-write", storage_write;
    "storage-delete" => cap_storage_delete, "warden:node/cap-storage-delete", storage_delete;
    "http-get" => cap_http_get, "warden:node/cap-http-get", http_get;
    "http-write" => cap_http_write, "warden:node/cap-http-write", http_write;
    "variables-read" => cap_variables_read, "warden:node/cap-variables-read", variables_read;
    "variables-write" => cap_variables_write, "warden:node/cap-variables-write", variables_write;
    "cache-read" => cap_cache_read, "warden:node/cap-cache-read", cache_read;
    "cache-write" => cap_cache_write, "warden:node/cap-cache-write", cache_write;
    "oauth" => cap_oauth, "warden:node/cap-oauth", oauth;
    "token" => cap_token, "warden:node/cap-token", token;
    "streaming" => cap_streaming, "warden:node/cap-streaming", streaming;
    "a2ui" => cap_a2ui, "warden:node/cap-a2ui", a2ui;
    "models" => cap_models, "warden:node/cap-models", models;
    "functions" => cap_functions, "warden:node/cap-functions", functions;
    "websocket" => cap_websocket, "warden:node/cap-websocket", websocket;
}

#[cfg(any(feature = "cache-read", feature = "cache-write"))]
pub mod cache;
pub mod log;
#[cfg(any(
    feature = "storage-read",
    feature = "storage-write",
    feature = "storage-delete"
))]
pub mod storage;
#[cfg(feature = "streaming")]
pub mod stream;
#[cfg(any(feature = "variables-read", feature = "variables-write"))]
pub mod variables;

/// Everything a node author usually needs.
pub mod prelude {
    pub use crate::{
        Context, DataType, FromValue, HostError, Json, Node, NodeError, NodeInfo, Pin, Scope, Value,
    };
}

/// A node: its description and what it does.
pub trait Node {
    /// The node's name, unique within its component.
    const NAME: &'static str;

    /// The node's metadata and pins; build it with [`NodeInfo::new`].
    fn info() -> NodeInfo;

    /// Reads inputs from `cx` and sets outputs on it.
    fn run(cx: &mut Context) -> Result<(), NodeError>;
}

/// Why a node failed: a message for the person running it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError(pub String);

impl NodeError {
    pub fn new(message: impl Into<String>) -> Self {
        NodeError(message.into())
    }
}

impl core::fmt::Display for NodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for NodeError {
    fn from(message: String) -> Self {
        NodeError(message)
    }
}

impl From<&str> for NodeError {
    fn from(message: &str) -> Self {
        NodeError(message.to_string())
    }
}

impl From<HostError> for NodeError {
    fn from(error: HostError) -> Self {
        NodeError(describe_host_error(&error))
    }
}

/// A one-line description of a host error, such as `denied: the upload scope is read-only…`.
pub fn describe_host_error(error: &HostError) -> String {
    let (kind, message) = match error {
        HostError::Denied(message) => ("denied", message),
        HostError::Invalid(message) => ("invalid", message),
        HostError::TooLarge(message) => ("too large", message),
        HostError::QuotaExceeded(message) => ("quota exceeded", message),
        HostError::Unavailable(message) => ("unavailable", message),
    };
    format!("{kind}: {message}")
}

/// One run: its context, its inputs, and the outputs the node sets.
pub struct Context {
    run: RunContext,
    inputs: Vec<Field>,
    outputs: Vec<Field>,
}

impl Context {
    /// Who and what the run belongs to.
    pub fn run_context(&self) -> &RunContext {
        &self.run
    }

    /// The input `name`, converted to `T`. The host has already checked it against the pin.
    pub fn input<T: FromValue>(&self, name: &str) -> Result<T, NodeError> {
        let value = self
            .input_value(name)
            .ok_or_else(|| NodeError(format!("input `{name}` is missing")))?;
        T::from_value(value)
            .ok_or_else(|| NodeError(format!("input `{name}` is not {}", T::EXPECTED)))
    }

    pub fn input_value(&self, name: &str) -> Option<&Value> {
        self.inputs
            .iter()
            .find(|field| field.name == name)
            .map(|field| &field.value)
    }

    /// Sets the output `name`, replacing an earlier value.
    pub fn output(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.outputs.iter_mut().find(|field| field.name == name) {
            Some(field) => field.value = value,
            None => self.outputs.push(Field {
                name: name.to_string(),
                value,
            }),
        }
    }

    /// Milliseconds left before the run's timeout.
    pub fn remaining_ms(&self) -> u64 {
        bindings::warden::node::context::remaining_ms()
    }
}

#[doc(hidden)]
pub fn __describe<N: Node>() -> NodeInfo {
    N::info()
}

#[doc(hidden)]
pub fn __run<N: Node>(run: RunContext, inputs: Vec<Field>) -> Result<Vec<Field>, String> {
    install_panic_hook();
    let mut cx = Context {
        run,
        inputs,
        outputs: Vec::new(),
    };
    N::run(&mut cx).map_err(|error| error.0)?;
    Ok(cx.outputs)
}

/// Sends a panic's message and location to the node's log (on every target: a
/// `wasm32-unknown-unknown` node has no stderr), so the host can say why the node trapped.
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            log::error(&info.to_string().replace('\n', " "))
        }));
    });
}

/// Exports the listed node types as this component's nodes.
#[macro_export]
macro_rules! export_nodes {
    ($($node:ty),+ $(,)?) => {
        #[doc(hidden)]
        pub struct __WardenNodes;

        impl $crate::bindings::exports::warden::node::node::Guest for __WardenNodes {
            fn describe() -> ::std::vec::Vec<$crate::NodeInfo> {
                ::std::vec![$($crate::__describe::<$node>()),+]
            }

            fn run(
                name: ::std::string::String,
                context: $crate::RunContext,
                inputs: ::std::vec::Vec<$crate::Field>,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::Field>, ::std::string::String> {
                $(
                    if name == <$node as $crate::Node>::NAME {
                        return $crate::__run::<$node>(context, inputs);
                    }
                )+
                ::std::result::Result::Err(::std::format!("this component provides no node `{name}`"))
            }
        }

        #[used]
        #[doc(hidden)]
        static __WARDEN_CAPABILITY_SECTIONS: &[fn()] = $crate::__CAPABILITY_SECTIONS;

        $crate::bindings::export!(__WardenNodes with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    /// The features of the SDK's Cargo.toml, `default` aside.
    fn cargo_features() -> Vec<String> {
        let manifest = include_str!("../Cargo.toml");
        let section = manifest
            .split("[features]")
            .nth(1)
            .expect("Cargo.toml has a [features] section");
        section
            .lines()
            .take_while(|line| !line.starts_with('['))
            .filter_map(|line| {
                line.split_once('=')
                    .map(|(name, _)| name.trim().to_string())
            })
            .filter(|name| !name.is_empty() && name != "default")
            .collect()
    }

    /// The capability list, the Cargo features and the world names agree; the host's test
    /// (`policy::capability`) checks the features against its capability table.
    #[test]
    fn the_capability_list_matches_the_features_and_the_worlds() {
        let listed: Vec<String> = super::__CAPABILITIES
            .iter()
            .map(|(feature, _)| feature.to_string())
            .collect();
        assert_eq!(listed, cargo_features());
        for (feature, world) in super::__CAPABILITIES {
            assert_eq!(*world, format!("warden:node/cap-{feature}"));
        }
    }
}
