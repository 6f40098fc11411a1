//! GETs a URL (only hosts in the operator's allowed_hosts), parses the JSON, and returns the value
//! at a JSON pointer.

use warden_sdk::bindings::warden::node::types::{Header, HttpRequest, Method};
use warden_sdk::prelude::*;

struct FetchJson;

impl Node for FetchJson {
    const NAME: &'static str = "fetch-json";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Fetch JSON")
            .description("Fetches a JSON document and returns the value at `pointer` (RFC 6901)")
            .category("web")
            .input(Pin::text("url"))
            .input(Pin::text("pointer").default("").describe("such as /data/0/name; empty for the whole document"))
            .output(Pin::json("value"))
            .output(Pin::integer("status"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let url: String = cx.input("url")?;
        let pointer: String = cx.input("pointer")?;
        let request = HttpRequest {
            method: Method::Get,
            url: url.clone(),
            headers: vec![Header { name: "accept".into(), value: "application/json".into() }],
            body: Vec::new(),
        };
        let response = warden_sdk::http_get::fetch(&request)?;
        if !(200..300).contains(&response.status) {
            return Err(NodeError::new(format!("{url} answered {}", response.status)));
        }
        let document: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|error| NodeError::new(format!("{url} did not return JSON: {error}")))?;
        let value = document
            .pointer(&pointer)
            .ok_or_else(|| NodeError::new(format!("the document has nothing at `{pointer}`")))?;
        cx.output("value", Json(value.to_string()));
        cx.output("status", response.status as i64);
        Ok(())
    }
}

warden_sdk::export_nodes!(FetchJson);
