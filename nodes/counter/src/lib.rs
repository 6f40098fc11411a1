//! Counts how often it ran, in storage private to its node instance.

use warden_sdk::prelude::*;
use warden_sdk::storage;

struct Counter;

const KEY: &str = "counter/value";

impl Node for Counter {
    const NAME: &'static str = "counter";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Counter")
            .description("Adds `step` to a count kept in node-scoped storage and returns it")
            .category("state")
            .input(Pin::integer("step").default(1i64).range(-1000.0, 1000.0))
            .output(Pin::integer("count"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let step: i64 = cx.input("step")?;
        let current = match storage::get_string(Scope::Node, KEY)? {
            Some(text) => text.parse::<i64>().map_err(|_| NodeError::new(format!("stored count `{text}` is not a number")))?,
            None => 0,
        };
        let next = current.checked_add(step).ok_or("the count overflowed")?;
        storage::set(Scope::Node, KEY, next.to_string().as_bytes())?;
        warden_sdk::log::info(&format!("count {current} -> {next}"));
        cx.output("count", next);
        Ok(())
    }
}

warden_sdk::export_nodes!(Counter);
