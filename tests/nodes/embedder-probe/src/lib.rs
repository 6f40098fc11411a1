//! `op` with `name` and `scopes` (comma-separated): the result as text, or the host's error.

use warden_sdk::prelude::*;
use warden_sdk::{a2ui, describe_host_error, functions, oauth, token};

struct EmbedderProbe;

impl Node for EmbedderProbe {
    const NAME: &'static str = "embedder";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Embedder probe")
            .input(Pin::text("op").one_of(["oauth", "token", "call", "render"]))
            .input(Pin::text("name").default(""))
            .input(Pin::text("scopes").default(""))
            .output(Pin::text("value"))
            .output(Pin::text("error"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let op: String = cx.input("op")?;
        let name: String = cx.input("name")?;
        let scopes: Vec<String> =
            cx.input::<String>("scopes")?.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
        let result = match op.as_str() {
            "oauth" => oauth::access_token(&name, &scopes).map(|token| format!("{} [{}]", token.token, token.scopes.join(","))),
            "token" => token::get(&name, &scopes),
            "call" => {
                let arguments = vec![warden_sdk::Field { name: "x".into(), value: Value::Integer(20) }];
                functions::call(&name, &arguments).map(|results| {
                    results.iter().map(|field| format!("{}={:?}", field.name, field.value)).collect::<Vec<_>>().join(",")
                })
            }
            _ => a2ui::render(&name).map(|()| "rendered".to_string()),
        };
        match result {
            Ok(value) => cx.output("value", value),
            Err(error) => cx.output("error", describe_host_error(&error)),
        }
        Ok(())
    }
}

warden_sdk::export_nodes!(EmbedderProbe);
