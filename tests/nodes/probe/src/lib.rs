//! One call to the capability the enabled feature names; `called` says which.

use warden_sdk::prelude::*;

struct Probe;

#[allow(unused_mut, unused_assignments)]
fn touch() -> Result<(&'static str, String), NodeError> {
    let mut called = "none";
    let mut detail = String::new();
    #[cfg(feature = "storage-read")]
    {
        warden_sdk::storage::get(Scope::Node, "probe")?;
        called = "storage-read";
    }
    #[cfg(feature = "storage-write")]
    {
        warden_sdk::storage::set(Scope::Node, "probe", b"1")?;
        called = "storage-write";
    }
    #[cfg(feature = "storage-delete")]
    {
        warden_sdk::storage::delete(Scope::Node, "probe")?;
        called = "storage-delete";
    }
    #[cfg(feature = "http-get")]
    {
        use warden_sdk::bindings::warden::node::types::{HttpRequest, Method};
        let request = HttpRequest { method: Method::Get, url: "https://example.com/".into(), headers: vec![], body: vec![] };
        let _ = warden_sdk::http_get::fetch(&request);
        called = "http-get";
    }
    #[cfg(feature = "http-write")]
    {
        use warden_sdk::bindings::warden::node::types::{HttpRequest, Method};
        let request = HttpRequest { method: Method::Post, url: "https://example.com/".into(), headers: vec![], body: vec![] };
        let _ = warden_sdk::http_write::send(&request);
        called = "http-write";
    }
    #[cfg(feature = "variables-read")]
    {
        warden_sdk::variables::get("probe")?;
        called = "variables-read";
    }
    #[cfg(feature = "variables-write")]
    {
        warden_sdk::variables::set("probe", "written")?;
        called = "variables-write";
    }
    #[cfg(feature = "cache-read")]
    {
        warden_sdk::cache::get("probe", warden_sdk::CacheScope::empty())?;
        called = "cache-read";
    }
    #[cfg(feature = "cache-write")]
    {
        warden_sdk::cache::set("probe", b"1", None, warden_sdk::CacheScope::empty())?;
        called = "cache-write";
    }
    #[cfg(feature = "oauth")]
    {
        let _ = warden_sdk::oauth::access_token("github", &[]);
        called = "oauth";
    }
    #[cfg(feature = "token")]
    {
        let _ = warden_sdk::token::get("service", &[]);
        called = "token";
    }
    #[cfg(feature = "streaming")]
    {
        warden_sdk::stream::emit("probe")?;
        called = "streaming";
    }
    #[cfg(feature = "a2ui")]
    {
        let _ = warden_sdk::a2ui::render("{}");
        called = "a2ui";
    }
    #[cfg(feature = "models")]
    {
        detail = match warden_sdk::models::embed("model", &["a".to_string(), "bbb".to_string()]) {
            Ok(vectors) => vectors.iter().map(|vector| vector.first().copied().unwrap_or(-1.0).to_string()).collect::<Vec<_>>().join(","),
            Err(error) => warden_sdk::describe_host_error(&error),
        };
        called = "models";
    }
    #[cfg(feature = "functions")]
    {
        let _ = warden_sdk::functions::call("fn", &[]);
        called = "functions";
    }
    #[cfg(feature = "websocket")]
    {
        let _ = warden_sdk::websocket::connect("wss://example.com/", &[]);
        called = "websocket";
    }
    #[cfg(feature = "tcp")]
    {
        let _ = std::net::TcpStream::connect("127.0.0.1:9");
        called = "tcp";
    }
    #[cfg(feature = "udp")]
    {
        let _ = std::net::UdpSocket::bind("127.0.0.1:0");
        called = "udp";
    }
    #[cfg(feature = "dns")]
    {
        use std::net::ToSocketAddrs;
        let _ = ("localhost", 80).to_socket_addrs();
        called = "dns";
    }
    #[cfg(feature = "filesystem")]
    {
        // The node's own directory is `/`; nothing outside it resolves.
        let own = std::fs::write("/note.txt", b"mine").and_then(|()| std::fs::read("/note.txt"));
        let escape = std::fs::read("/../../../../etc/passwd").is_ok() || std::fs::read("/etc/passwd").is_ok();
        called = match (own, escape) {
            (_, true) => "filesystem-escaped",
            (Ok(bytes), false) if bytes == b"mine" => "filesystem-own-dir",
            _ => "filesystem-broken",
        };
    }
    #[cfg(feature = "filesystem-flood")]
    {
        let chunk = vec![7u8; 1 << 20];
        let written = (0..512).take_while(|index| std::fs::write(format!("/flood-{index}"), &chunk).is_ok()).count();
        called = "filesystem-flood";
        detail = written.to_string();
    }
    Ok((called, detail))
}

impl Node for Probe {
    const NAME: &'static str = "probe";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Probe").output(Pin::text("called")).output(Pin::text("detail"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let (called, detail) = touch()?;
        cx.output("called", called);
        cx.output("detail", detail);
        Ok(())
    }
}

warden_sdk::export_nodes!(Probe);
