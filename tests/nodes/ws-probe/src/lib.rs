//! Connects to `url`, sends `message`, returns the reply (or the host's error).

use warden_sdk::prelude::*;
use warden_sdk::websocket::{self, Message};

struct WsProbe;

fn exchange(url: &str, message: &str) -> Result<String, HostError> {
    let connection = websocket::connect(url, &[])?;
    connection.send(&Message::Text(message.to_string()))?;
    let reply = match connection.receive(Some(5_000))? {
        Some(Message::Text(text)) => text,
        Some(Message::Binary(bytes)) => format!("{} bytes", bytes.len()),
        None => "closed".to_string(),
    };
    connection.close()?;
    Ok(reply)
}

impl Node for WsProbe {
    const NAME: &'static str = "ws";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "WebSocket probe")
            .input(Pin::text("url"))
            .input(Pin::text("message").default("hello"))
            .output(Pin::text("reply"))
            .output(Pin::text("error"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let url: String = cx.input("url")?;
        let message: String = cx.input("message")?;
        match exchange(&url, &message) {
            Ok(reply) => cx.output("reply", reply),
            Err(error) => cx.output("error", warden_sdk::describe_host_error(&error)),
        }
        Ok(())
    }
}

warden_sdk::export_nodes!(WsProbe);
