//! `op` on `key` in `scope`: the value, or the host error as text in `error`.

use warden_sdk::prelude::*;
use warden_sdk::{CacheScope, cache, describe_host_error, storage, variables};

struct StorageProbe;

fn scope(name: &str) -> Result<Scope, NodeError> {
    Ok(match name {
        "board" => Scope::Board,
        "node" => Scope::Node,
        "user" => Scope::User,
        "upload" => Scope::Upload,
        "cache" => Scope::Cache,
        other => return Err(NodeError::new(format!("unknown scope {other}"))),
    })
}

impl Node for StorageProbe {
    const NAME: &'static str = "storage";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Storage probe")
            .input(Pin::text("op").one_of(["get", "set", "delete", "list", "exists", "cache-get", "cache-set", "var-get", "var-set"]))
            .input(Pin::text("scope").default("node"))
            .input(Pin::text("key").default(""))
            .input(Pin::text("value").default(""))
            .input(Pin::integer("size").default(0i64).describe("when > 0, set a value of this many bytes"))
            .input(Pin::integer("ttl-ms").default(0i64))
            .output(Pin::any("value"))
            .output(Pin::text("error"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let op: String = cx.input("op")?;
        let scope = scope(&cx.input::<String>("scope")?)?;
        let key: String = cx.input("key")?;
        let text: String = cx.input("value")?;
        let size: i64 = cx.input("size")?;
        let ttl: i64 = cx.input("ttl-ms")?;
        let bytes = if size > 0 { vec![b'v'; size as usize] } else { text.into_bytes() };
        let ttl = (ttl > 0).then(|| core::time::Duration::from_millis(ttl as u64));
        let result: Result<Value, HostError> = match op.as_str() {
            "get" => storage::get_string(scope, &key).map(|v| v.map(Value::Text).unwrap_or(Value::Null)),
            "set" => storage::set(scope, &key, &bytes).map(|()| Value::Boolean(true)),
            "delete" => storage::delete(scope, &key).map(Value::Boolean),
            "exists" => storage::exists(scope, &key).map(Value::Boolean),
            "list" => storage::list(scope, &key, 100).map(|keys| Value::Text(keys.join(","))),
            "cache-get" => cache::get(&key, CacheScope::PER_NODE)
                .map(|v| v.map(|b| Value::Text(String::from_utf8_lossy(&b).into_owned())).unwrap_or(Value::Null)),
            "cache-set" => cache::set(&key, &bytes, ttl, CacheScope::PER_NODE).map(|()| Value::Boolean(true)),
            "var-get" => variables::get(&key).map(|v| v.unwrap_or(Value::Null)),
            "var-set" => variables::set(&key, String::from_utf8_lossy(&bytes).into_owned()).map(|()| Value::Boolean(true)),
            other => return Err(NodeError::new(format!("unknown op {other}"))),
        };
        match result {
            Ok(value) => cx.output("value", value),
            Err(error) => cx.output("error", describe_host_error(&error)),
        }
        Ok(())
    }
}

warden_sdk::export_nodes!(StorageProbe);
