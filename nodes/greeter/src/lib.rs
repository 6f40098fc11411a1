//! Builds a greeting for the `name` variable, caches it per user, and streams it word by word.

use warden_sdk::prelude::*;
use warden_sdk::{CacheScope, cache, stream, variables};

struct Greeter;

impl Node for Greeter {
    const NAME: &'static str = "greeter";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Greeter")
            .description("Greets the person named by the `name` variable; remembers greetings in the cache")
            .category("text")
            .input(Pin::text("greeting").default("Hello"))
            .output(Pin::text("message"))
            .output(Pin::boolean("cached").describe("Whether the message came from the cache"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let greeting: String = cx.input("greeting")?;
        let name = match variables::get("name")? {
            Some(Value::Text(name)) => name,
            Some(_) => return Err(NodeError::new("the variable `name` must be text")),
            None => return Err(NodeError::new("set the variable `name` (warden run --var name=Ada)")),
        };
        let key = format!("greeting/{}", greeting.to_lowercase());
        let scope = CacheScope::PER_USER;
        let (message, cached) = match cache::get(&key, scope)? {
            Some(bytes) => (String::from_utf8_lossy(&bytes).into_owned(), true),
            None => {
                let message = format!("{greeting}, {name}!");
                cache::set(&key, message.as_bytes(), Some(core::time::Duration::from_secs(600)), scope)?;
                (message, false)
            }
        };
        for word in message.split_inclusive(' ') {
            stream::emit(word)?;
        }
        cx.output("message", message);
        cx.output("cached", cached);
        Ok(())
    }
}

warden_sdk::export_nodes!(Greeter);
