//! `method` `url` with `body`: the status, body and `x-protocol` header, or the host's error.

use warden_sdk::bindings::warden::node::types::{Header, HttpRequest, Method};
use warden_sdk::prelude::*;
use warden_sdk::{describe_host_error, http_get, http_write};

struct HttpProbe;

impl Node for HttpProbe {
    const NAME: &'static str = "http";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "HTTP probe")
            .input(Pin::text("method").default("GET").one_of(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]))
            .input(Pin::text("url"))
            .input(Pin::text("body").default(""))
            .input(Pin::boolean("write").default(false).describe("send through http-write instead of http-get"))
            .output(Pin::integer("status"))
            .output(Pin::text("body"))
            .output(Pin::text("protocol"))
            .output(Pin::text("error"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let method = match cx.input::<String>("method")?.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            _ => Method::Delete,
        };
        let request = HttpRequest {
            method,
            url: cx.input("url")?,
            headers: vec![Header { name: "authorization".into(), value: "Bearer secret".into() }],
            body: cx.input::<String>("body")?.into_bytes(),
        };
        let response = if cx.input::<bool>("write")? { http_write::send(&request) } else { http_get::fetch(&request) };
        match response {
            Ok(response) => {
                let protocol = response.headers.iter().find(|h| h.name == "x-protocol").map(|h| h.value.clone());
                cx.output("status", response.status as i64);
                cx.output("body", String::from_utf8_lossy(&response.body).into_owned());
                cx.output("protocol", protocol.unwrap_or_default());
            }
            Err(error) => cx.output("error", describe_host_error(&error)),
        }
        Ok(())
    }
}

warden_sdk::export_nodes!(HttpProbe);
