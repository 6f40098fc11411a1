//! A pool slot's next run sees pristine memory. Between runs the pool resets a slot's memory and
//! tables (with `madvise`; Wasmtime's in-place reset missed swapped-out pages, see
//! docs/benchmarks-history.md); nothing a run wrote may reach the next run in that slot. The
//! hostile node checks that its memory and its table are as its module defines them (its data
//! segment intact, zeros elsewhere, in its first pages and in 3 MiB it grows; no function in the
//! table), traps if not, and then writes over all of them, so that the next run finds the
//! residue if any is left.

use super::hostile;
use futures_util::future::join_all;
use warden_host::{NodeComponent, Runtime, WasmSecurityConfig};

/// Zero from `$from` to `$to` (i64 at a time), else a trap.
fn check_zero(from: &str, to: &str) -> String {
    format!(
        r#"(local.set $i {from})
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) {to}))
      (if (i64.ne (i64.load (local.get $i)) (i64.const 0)) (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $next)))"#
    )
}

fn residue_checking_node() -> NodeComponent {
    // Beside the data segment, a table of its own (8 KiB of entries, more than a page), empty
    // as the module defines it.
    let data = r#"(data (i32.const 2048) "\01\02\03\04\05\06\07\08")
  (table $left 1024 funcref)
  (func $mark)
  (elem declare func $mark)"#;
    let body = format!(
        r#"
    ;; The data segment as the module defines it, and zeros around it.
    (if (i64.ne (i64.load (i32.const 2048)) (i64.const 0x0807060504030201)) (then unreachable))
    {}
    ;; 48 new pages (3 MiB, past what a slot keeps resident), all zero.
    (if (i32.ne (memory.grow (i32.const 48)) (i32.const 2)) (then unreachable))
    {}
    ;; The table empty.
    (local.set $i (i32.const 0))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const 1024)))
      (if (i32.eqz (ref.is_null (table.get $left (local.get $i)))) (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    ;; Residue for the next run: everything written over.
    (table.fill $left (i32.const 0) (ref.func $mark) (i32.const 1024))
    (i64.store (i32.const 2048) (i64.const -1))
    (memory.fill (i32.const 4096) (i32.const 0xa5) (i32.const 61440))
    (memory.fill (i32.const 131072) (i32.const 0xa5) (i32.const 3145728))"#,
        check_zero("(i32.const 4096)", "(i32.const 65536)"),
        check_zero("(i32.const 131072)", "(i32.const 3276800)"),
    );
    NodeComponent::from_bytes(hostile::component("", data, &body)).expect("a component")
}

#[test]
fn a_run_never_sees_what_the_previous_run_in_its_slot_wrote() {
    let runtime = Runtime::new().unwrap();
    let node = residue_checking_node();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let prepared = tokio
        .block_on(runtime.prepare(&node, &WasmSecurityConfig::default()))
        .unwrap();
    // One after another: each run takes the slot the last one left.
    for index in 0..40 {
        let outcome = tokio.block_on(prepared.run(hostile::request()));
        assert!(outcome.is_ok(), "run {index} saw residue: {outcome:?}");
    }
    // Eight at a time, several rounds: slots change hands between tasks and threads.
    for round in 0..5 {
        let runs = (0..8).map(|_| {
            let prepared = prepared.clone();
            tokio.spawn(async move { prepared.run(hostile::request()).await })
        });
        for (index, joined) in tokio.block_on(join_all(runs)).into_iter().enumerate() {
            let outcome = joined.unwrap();
            assert!(
                outcome.is_ok(),
                "round {round}, run {index} saw residue: {outcome:?}"
            );
        }
    }
}
