//! `warden install` and `warden approve` spell their approval flags as `warden run` does:
//! `--grant`, `--allow-host`, `--preset`. The spellings before (`--approve`, `--approve-host`,
//! `--approve-preset`, and approve's `--host`) stay as hidden aliases, so scripts keep working.

use super::*;

/// One spelling of the approval flags: install's capability, host and preset flags, then
/// approve's host flag.
type Spelling = [&'static str; 4];
const NEW: Spelling = ["--grant", "--allow-host", "--preset", "--allow-host"];
const OLD: Spelling = ["--approve", "--approve-host", "--approve-preset", "--host"];

#[test]
fn install_and_approve_take_the_flags_of_run_and_the_old_spellings() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    // It requests storage-read, storage-write, two hosts and the default preset.
    let widget = pack_with(
        &with_storage(),
        "widget",
        "1.0.0",
        "acme",
        &["api.example.com", "cdn.example.com"],
        &acme.key,
    );
    registry.publish(&acme.token, widget).unwrap();
    let ca = registry.cert_path().to_string_lossy().into_owned();
    for [grant, allow_host, preset, approve_host] in [NEW, OLD] {
        let state = tempfile::tempdir().unwrap();
        let warden = |args: &[&str]| -> String {
            let output = Command::new(env!("CARGO_BIN_EXE_warden"))
                .args(args)
                .arg("--state")
                .arg(state.path())
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        // A first install approving less than requested: exactly what the flags name.
        warden(&[
            "install",
            "widget",
            "--registry",
            &registry.url,
            "--token",
            &acme.token,
            "--ca-cert",
            &ca,
            "--registry-key",
            &registry.public_key,
            grant,
            "storage-read",
            allow_host,
            "api.example.com",
            preset,
            "restrictive",
        ]);
        let installed = InstallState::open(state.path())
            .unwrap()
            .installed("widget")
            .unwrap()
            .unwrap();
        assert_eq!(installed.approved, vec!["storage-read"], "{grant}");
        assert_eq!(
            installed.approved_hosts,
            vec!["api.example.com"],
            "{allow_host}"
        );
        assert_eq!(installed.approved_limits, "restrictive", "{preset}");
        assert!(!installed.enabled);
        // Approving the rest by name enables it.
        let approved = warden(&[
            "approve",
            "widget",
            "--grant",
            "storage-write",
            approve_host,
            "cdn.example.com",
            "--preset",
            "default",
        ]);
        assert!(
            approved.contains("widget@1.0.0 enabled")
                && approved.contains("hosts [api.example.com,cdn.example.com]")
                && approved.contains("limits up to default"),
            "{approve_host}: {approved}"
        );
    }
}
