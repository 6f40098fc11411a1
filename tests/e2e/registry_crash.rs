//! Crash safety: the registry process is killed with SIGKILL at random points while packages
//! are being published, then restarted. After every kill, the stored state must check out whole
//! (`warden registry check`: every record has its file, every file verifies, the log chains to
//! the signed index), and every publish the registry acknowledged must still be there.

use crate::support::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use warden::build::Target;
use warden_package::{self as package, Manifest};
use warden_registry::client::install;
use warden_registry::client::{Client, ClientError, Credential};
use warden_registry::protocol::{Index, Signed, now};

const ROUNDS: usize = 8;

struct Server {
    child: Child,
    url: String,
    owner: Option<String>,
}

impl Drop for Server {
    /// A failing test must not leave a registry running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["registry", "serve", "--listen", "127.0.0.1:0"])
        // It publishes hundreds of versions as fast as it can.
        .args(["--publish-rate", "100000/1s", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut url = None;
    let mut owner = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("listening on ") {
            url = Some(rest.trim().to_string());
        }
        if let Some(position) = line.find("wdn_pat_") {
            owner = Some(line[position..].trim().to_string());
        }
        // "listening on" is the banner's last line.
        if url.is_some() {
            break;
        }
    }
    Server {
        child,
        url: url.expect("the registry prints where it listens"),
        owner,
    }
}

fn check(data: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["registry", "check", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the registry's state is not whole after a kill: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        report.contains("integrity check Passed"),
        "redb needed a repair: {report}"
    );
    report
}

#[test]
fn sigkill_during_publishes_loses_nothing_acknowledged_and_leaves_nothing_torn() {
    let seed = std::env::var("WARDEN_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| now() | 1);
    println!("crash test seed: {seed} (replay with WARDEN_CRASH_SEED={seed})");
    let mut random = Random(seed);
    let data = tempfile::tempdir().unwrap();
    let component = std::fs::read(example("text-transform", Target::Unknown)).unwrap();
    let mut server = start(data.path());
    let owner = server
        .owner
        .clone()
        .expect("a new registry shows its owner token");
    let ca = warden_host::tls::certificates_from_pem_or_der(
        &std::fs::read(data.path().join("tls/cert.pem")).unwrap(),
    )
    .unwrap();
    let registry_key = std::fs::read_to_string(data.path().join("registry.pub")).unwrap();
    let client = |url: &str, token: &str| {
        Client::new(url, &ca, Some(Credential::from_token(token))).unwrap()
    };

    let setup = client(&server.url, &owner);
    let _: serde_json::Value = block_on(setup.post_json(
        "v1/users",
        &json!({ "name": "alice", "roles": ["publisher"], "publisher": "acme" }),
    ))
    .unwrap();
    let issued: serde_json::Value =
        block_on(setup.post_json("v1/tokens", &json!({ "user": "alice", "kind": "api-key" })))
            .unwrap();
    let token = issued["token"].as_str().unwrap().to_string();
    let key = package::generate_key().unwrap();
    let _: serde_json::Value = block_on(client(&server.url, &token).post_json(
        "v1/publishers/acme/keys",
        // A new registry's identity is the key it was created with, its registry.pub.
        &json!({
            "public_key": package::public_key_hex(&key),
            "possession": warden_registry::protocol::sign_possession(registry_key.trim(), "acme", &key),
        }),
    ))
    .unwrap();

    let packages: Vec<Vec<u8>> = (0..400)
        .map(|patch| {
            let manifest = Manifest {
                name: "text-transform".into(),
                version: format!("1.0.{patch}"),
                description: String::new(),
                publisher: "acme".into(),
                capabilities: vec![],
                allowed_hosts: vec![],
                limits: "default".into(),
                wit: String::new(),
                component_sha256: String::new(),
                component_bytes: 0,
            };
            package::pack(&component, manifest, &key).unwrap()
        })
        .collect();

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut next = 0;
    for round in 0..ROUNDS {
        let publisher = client(&server.url, &token);
        let batch: Vec<(String, Vec<u8>)> = (next..packages.len())
            .map(|patch| (format!("1.0.{patch}"), packages[patch].clone()))
            .collect();
        let acked = acknowledged.clone();
        let worker = std::thread::spawn(move || {
            block_on(async {
                for (version, bytes) in batch {
                    let answer = publisher
                        .send(
                            hyper::Method::POST,
                            "v1/packages",
                            Some(("application/octet-stream", bytes)),
                            1 << 20,
                        )
                        .await;
                    match answer {
                        Ok(_) => acked.lock().unwrap().push(version),
                        // Committed just before the previous kill, unacknowledged: fine.
                        Err(ClientError::Status { status, .. }) if status == 409 => {}
                        Err(_) => break,
                    }
                }
            })
        });
        let delay = 20 + random.next() % 400;
        std::thread::sleep(std::time::Duration::from_millis(delay));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        worker.join().unwrap();

        let report = check(data.path());
        let acked = acknowledged.lock().unwrap().clone();
        println!(
            "round {round}: killed after {delay} ms, {} acknowledged; {report}",
            acked.len()
        );
        server = start(data.path());
        let reader = client(&server.url, &token);
        let signed: Signed = block_on(reader.get_json("v1/index")).unwrap();
        let index = Index::verify(
            &signed,
            &package::verifying_key_from_hex(&registry_key).unwrap(),
            now(),
        )
        .unwrap();
        for version in &acked {
            let entry = index
                .entry("text-transform", version)
                .unwrap_or_else(|| panic!("acknowledged {version} was lost"));
            let bytes = block_on(reader.send(
                hyper::Method::GET,
                &format!("v1/packages/text-transform/{version}"),
                None,
                1 << 24,
            ))
            .unwrap();
            install::check_package(&bytes, entry, &index).unwrap();
        }
        let stored = index
            .packages
            .iter()
            .filter(|entry| entry.name == "text-transform")
            .count();
        assert!(stored >= acked.len());
        next = stored;
    }
    assert!(
        !acknowledged.lock().unwrap().is_empty(),
        "no publish was acknowledged: the test measured nothing"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    check(data.path());
}

/// A first start killed at a random moment: its directory must start afterwards, as a new
/// registry (nothing was committed) or as the whole registry the first start made.
#[test]
fn sigkill_during_first_starts_leaves_nothing_or_a_whole_registry() {
    const FIRST_STARTS: usize = 40;
    let seed = std::env::var("WARDEN_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| now() | 1);
    println!("first-start crash test seed: {seed} (replay with WARDEN_CRASH_SEED={seed})");
    let mut random = Random(seed);
    // How long a first start takes to listen: the kills land from its beginning to past it.
    let calibrate = tempfile::tempdir().unwrap();
    let began = std::time::Instant::now();
    drop(start(calibrate.path()));
    let full = began.elapsed().as_micros() as u64;
    println!("a first start listens after {} ms", full / 1000);
    let (mut fresh_again, mut kept) = (0, 0);
    for round in 0..FIRST_STARTS {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["registry", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = random.next() % (full + full / 2).max(1);
        std::thread::sleep(std::time::Duration::from_micros(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut printed = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut printed);
        let listened = printed.contains("listening on");

        let output = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["registry", "check", "--data"])
            .arg(data.path())
            .output()
            .unwrap();
        let database = data.path().join("registry.redb").exists();
        // Either no registry at all (check refuses a directory that holds none) or a whole one.
        assert!(
            output.status.success() || !database,
            "round {round} (killed after {delay} µs): a database that does not check out: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let server = start(data.path());
        if listened {
            assert!(
                server.owner.is_none(),
                "round {round}: a registry that listened started afresh after the kill"
            );
        }
        if server.owner.is_some() {
            fresh_again += 1;
        } else {
            kept += 1;
        }
        drop(server);
        check(data.path());
        assert!(
            !data.path().join(".registry-init").exists(),
            "round {round}: the staging directory was left behind"
        );
        println!(
            "round {round}: killed after {delay} µs, {}",
            if listened {
                "after listening"
            } else {
                "before listening"
            }
        );
    }
    println!("{fresh_again} restarts began afresh, {kept} found the registry the kill left");
}
