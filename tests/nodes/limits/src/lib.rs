//! Misbehaving nodes: each runs into one limit. Plus `noop` and `host-calls` for benchmarks.

use std::hint::black_box;
use warden_sdk::prelude::*;

macro_rules! node {
    ($ty:ident, $name:literal, |$cx:ident| $body:block $(, $pin:expr)*) => {
        struct $ty;
        impl Node for $ty {
            const NAME: &'static str = $name;
            fn info() -> NodeInfo {
                NodeInfo::new(Self::NAME, $name)$(.input($pin))*.output(Pin::any("result"))
            }
            fn run($cx: &mut Context) -> Result<(), NodeError> $body
        }
    };
}

node!(Noop, "noop", |_cx| { Ok(()) });

node!(Spin, "spin", |cx| {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
        if counter == u64::MAX {
            cx.output("result", counter as i64);
            return Ok(());
        }
    }
});

node!(Grow, "grow", |cx| {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        chunk[0] = hoard.len() as u8;
        hoard.push(black_box(chunk));
        if hoard.len() == usize::MAX {
            cx.output("result", hoard.len() as i64);
            return Ok(());
        }
    }
});

/// Recursion whose frames live on the wasm stack (no address-taken locals, so nothing goes to
/// the shadow stack in linear memory), and which the optimizer cannot turn into a loop.
#[inline(never)]
fn descend(depth: u64) -> u64 {
    if depth == 0 { 1 } else { descend(depth - 1).wrapping_mul(31).wrapping_add(depth) }
}

node!(Recurse, "recurse", |cx| {
    let depth: i64 = cx.input("depth")?;
    cx.output("result", descend(depth as u64) as i64);
    Ok(())
}, Pin::integer("depth").default(100_000_000i64));

node!(BigOutput, "big-output", |cx| {
    let bytes: i64 = cx.input("bytes")?;
    cx.output("result", "x".repeat(bytes as usize));
    Ok(())
}, Pin::integer("bytes"));

node!(LogFlood, "log-flood", |cx| {
    let lines: i64 = cx.input("lines")?;
    let line = "l".repeat(100);
    for _ in 0..lines {
        warden_sdk::log::info(&line);
    }
    cx.output("result", lines);
    Ok(())
}, Pin::integer("lines"));

node!(PrintFlood, "print-flood", |cx| {
    let lines: i64 = cx.input("lines")?;
    for index in 0..lines {
        println!("stdout line {index} {}", "p".repeat(90));
        eprintln!("stderr line {index}");
    }
    cx.output("result", lines);
    Ok(())
}, Pin::integer("lines"));

node!(Sleep, "sleep", |cx| {
    let ms: i64 = cx.input("ms")?;
    std::thread::sleep(std::time::Duration::from_millis(ms as u64));
    cx.output("result", ms);
    Ok(())
}, Pin::integer("ms"));

node!(Fail, "fail", |_cx| { Err(NodeError::new("deliberate failure")) });

node!(Panic, "panic", |_cx| { panic!("deliberate panic") });

node!(Exit, "exit", |_cx| { std::process::exit(3) });

node!(HostCalls, "host-calls", |cx| {
    let calls: i64 = cx.input("calls")?;
    let mut sum = 0u64;
    for _ in 0..calls {
        sum = sum.wrapping_add(cx.remaining_ms());
    }
    cx.output("result", black_box(sum) as i64);
    Ok(())
}, Pin::integer("calls"));

warden_sdk::export_nodes!(Noop, Spin, Grow, Recurse, BigOutput, LogFlood, PrintFlood, Sleep, Fail, Panic, Exit, HostCalls);
