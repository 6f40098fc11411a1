//! The benchmark suite's nodes: a no-op, host-call loops (log, storage reads, http-get) and a
//! CPU-bound hash, each with an integer input `n` and an integer output `result`.

use std::hint::black_box;
use warden_sdk::bindings::warden::node::types::{HttpRequest, Method};
use warden_sdk::prelude::*;
use warden_sdk::storage;

macro_rules! node {
    ($ty:ident, $name:literal, |$cx:ident| $body:block) => {
        struct $ty;
        impl Node for $ty {
            const NAME: &'static str = $name;
            fn info() -> NodeInfo {
                NodeInfo::new(Self::NAME, $name)
                    .input(Pin::integer("n").default(0i64))
                    .output(Pin::integer("result"))
            }
            fn run($cx: &mut Context) -> Result<(), NodeError> $body
        }
    };
}

node!(Noop, "noop", |_cx| { Ok(()) });

node!(LogCalls, "log-calls", |cx| {
    let calls: i64 = cx.input("n")?;
    for _ in 0..calls {
        warden_sdk::log::debug("bench");
    }
    cx.output("result", calls);
    Ok(())
});

node!(StorageReads, "storage-reads", |cx| {
    let reads: i64 = cx.input("n")?;
    let mut found = 0i64;
    for _ in 0..reads {
        if storage::get(Scope::Board, "bench/key")?.is_some() {
            found += 1;
        }
    }
    cx.output("result", found);
    Ok(())
});

/// FNV-1a over `n` bytes of a generated buffer: work the compiler cannot skip, with a loop
/// back-edge per byte (where fuel and epoch checks go).
node!(Hash, "hash", |cx| {
    let bytes: i64 = cx.input("n")?;
    let data: Vec<u8> = (0..bytes as u32).map(|index| (index.wrapping_mul(2654435761) >> 24) as u8).collect();
    let mut hash = 0xcbf29ce484222325u64;
    for byte in black_box(&data) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    cx.output("result", hash as i64);
    Ok(())
});

/// `n` GETs of `url`, one after another; how many answered 200.
struct HttpGets;

impl Node for HttpGets {
    const NAME: &'static str = "http-gets";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "http-gets")
            .input(Pin::integer("n").default(0i64))
            .input(Pin::text("url").default(""))
            .output(Pin::integer("result"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let gets: i64 = cx.input("n")?;
        let url: String = cx.input("url")?;
        let request = HttpRequest { method: Method::Get, url, headers: Vec::new(), body: Vec::new() };
        let mut answered = 0i64;
        for _ in 0..gets {
            if warden_sdk::http_get::fetch(&request)?.status == 200 {
                answered += 1;
            }
        }
        cx.output("result", answered);
        Ok(())
    }
}

warden_sdk::export_nodes!(Noop, LogCalls, StorageReads, Hash, HttpGets);
