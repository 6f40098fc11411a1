//! The `allow_wasi` directory has a byte quota: a node writing without end is stopped while it
//! writes, and a directory over its quota starts no run.

use crate::support::build_node;
use warden::build::Target;
use warden_host::{
    Capabilities, Error, LimitKind, Limits, NodeComponent, RunContext, RunRequest, Runtime,
    RuntimeConfig, Storage, WasmSecurityConfig,
};

const QUOTA: u64 = 8 * 1024 * 1024;

#[test]
fn a_node_filling_its_directory_is_stopped_and_the_next_run_refused() {
    let flood = build_node("tests/nodes/probe", Target::Wasip2, &["filesystem-flood"]);
    let node = NodeComponent::from_bytes(std::fs::read(flood).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut settings = RuntimeConfig::new(Storage::in_memory().unwrap());
    settings.files_dir = Some(root.path().to_path_buf());
    let warden = Runtime::from_config(settings);
    let mut limits = Limits::default();
    limits.host.files_bytes = QUOTA;
    let config = WasmSecurityConfig {
        capabilities: Capabilities::empty(),
        allow_wasi: true,
        limits,
        ..WasmSecurityConfig::default()
    };
    let request = || RunRequest {
        node: Some("probe".into()),
        context: RunContext::for_node("flood"),
        ..RunRequest::default()
    };
    let files = || -> usize {
        std::fs::read_dir(root.path())
            .unwrap()
            .flatten()
            .map(|dir| std::fs::read_dir(dir.path()).map_or(0, |entries| entries.count()))
            .sum()
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let prepared = tokio.block_on(warden.prepare(&node, &config)).unwrap();
    let first = tokio.block_on(prepared.run(request()));
    let written = files();
    println!("the flood wrote {written} files of 1 MiB against a quota of 8 MiB: {first:?}");
    match &first {
        Err(Error::Limit {
            kind: LimitKind::Files,
            detail,
        }) => {
            assert!(detail.contains("over the quota"), "{detail}")
        }
        other => panic!("expected the files limit, got {other:?}"),
    }
    assert!(
        written < 512,
        "the node wrote all it wanted ({written} files)"
    );
    let second = tokio.block_on(prepared.run(request()));
    assert!(
        matches!(
            second,
            Err(Error::Limit {
                kind: LimitKind::Files,
                ..
            })
        ),
        "{second:?}"
    );
    assert_eq!(files(), written, "the refused run wrote files");
}
