//! Denial of service against a real registry: uploads are spooled to disk and bounded in
//! flight, stalled uploads get 408 and give their slot back, and a client that stops reading a
//! download loses its slot to the send timeout. (warden-server's own tests cover the
//! connection phases: server/tests/connections.rs.)

use super::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_registry::server::{ApiLimits, ServerLimits};

mod dual_stack;
mod files;
mod flood;
mod json;
mod resets;
mod shares;

/// A `warden registry serve` child process, killed when dropped.
struct Served {
    child: Child,
    address: String,
    owner: String,
    ca: Vec<u8>,
    data: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(extra: &[&str]) -> Served {
        Served::start_with_files(None, extra)
    }

    /// A child whose open files are limited to `files` (soft and hard), when given.
    fn start_with_files(files: Option<u64>, extra: &[&str]) -> Served {
        let data = tempfile::tempdir().unwrap();
        let mut command = match files {
            Some(files) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={files}:{files}"));
                command.arg(env!("CARGO_BIN_EXE_warden"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_warden")),
        };
        command
            .args(["registry", "serve", "--data"])
            .arg(data.path());
        if !extra.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut owner, mut address) = (None, None);
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(position) = line.find("wdn_pat_") {
                owner = Some(line[position..].trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("listening on https://") {
                address = Some(rest.trim().to_string());
                break;
            }
        }
        let pem = std::fs::read(tls::dev_certificate_path(data.path())).unwrap();
        let ca = warden_host::tls::certificates_from_pem_or_der(&pem).unwrap()[0].clone();
        Served {
            child,
            address: address.expect("the registry prints where it listens"),
            owner: owner.expect("a new registry prints its owner token"),
            ca,
            data,
        }
    }

    /// A field of /proc/<pid>/status, in kB for memory.
    fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Starts an upload of a `declared`-byte package and sends `sent` bytes of it.
async fn begin_upload(address: &str, ca: &[u8], token: &str, declared: usize, sent: usize) -> Tls {
    let mut tls = connect_tls(address.to_string(), ca.to_vec(), &[]).await;
    let head = format!(
        "POST /v1/packages HTTP/1.1\r\nhost: {address}\r\nauthorization: PAT {token}\r\ncontent-type: application/octet-stream\r\ncontent-length: {declared}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0x5au8; 1024 * 1024];
    let mut left = sent;
    while left > 0 {
        let take = left.min(chunk.len());
        tls.write_all(&chunk[..take]).await.unwrap();
        left -= take;
    }
    tls.flush().await.unwrap();
    tls
}

/// The status line of the answer to a whole small upload.
async fn upload_status(address: &str, ca: &[u8], token: &str) -> String {
    let mut tls = begin_upload(address, ca, token, 1000, 1000).await;
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut answer))
        .await
        .expect("no answer to an upload within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn paused_uploads_cost_disk_not_memory_and_uploads_past_the_cap_get_503() {
    let served = Served::start(&["--max-uploads", "4", "--max-uploads-per-user", "4"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (address, ca, owner) = (
        served.address.clone(),
        served.ca.clone(),
        served.owner.clone(),
    );
    // Warm up: one answered request, so the baseline includes a running connection path.
    let client = Client::new(
        &format!("https://{address}"),
        std::slice::from_ref(&ca),
        Some(Credential::from_token(&owner)),
    )
    .unwrap();
    block_on(client.get_json::<Json>("v1/index")).unwrap();
    let entries_before = std::fs::read_dir(served.data.path()).unwrap().count();
    let (rss_before, fds_before) = (served.status("VmRSS:"), served.open_fds());

    // Four uploads of a 60 MiB package, each paused after 24 MiB: the old registry held
    // 4 × 24 MiB in memory.
    const SENT: usize = 24 * 1024 * 1024;
    let paused: Vec<Tls> = runtime.block_on(async {
        let mut paused = Vec::new();
        for _ in 0..4 {
            paused.push(begin_upload(&address, &ca, &owner, 60 << 20, SENT).await);
        }
        paused
    });
    // Let the registry drain what the sockets still buffer.
    std::thread::sleep(Duration::from_secs(1));
    let (rss_paused, fds_paused) = (served.status("VmRSS:"), served.open_fds());
    let grown = rss_paused.saturating_sub(rss_before);
    eprintln!(
        "4 uploads paused at 24 MiB: registry RSS {rss_before} -> {rss_paused} kB (+{grown}), \
         descriptors {fds_before} -> {fds_paused}"
    );
    assert!(
        grown < 32 * 1024,
        "4 paused uploads of 24 MiB grew the registry by {grown} kB"
    );
    // A connection and a spool file per upload, nothing more.
    assert!(
        fds_paused <= fds_before + 2 * 4 + 4,
        "{fds_before} -> {fds_paused}"
    );
    // The spool files have no name: nothing to clean up, whatever happens to the process.
    assert_eq!(
        std::fs::read_dir(served.data.path()).unwrap().count(),
        entries_before
    );
    // A fifth upload is refused at once; other requests are served.
    let fifth = runtime.block_on(upload_status(&address, &ca, &owner));
    assert!(fifth.contains("503"), "{fifth}");
    block_on(client.get_json::<Json>("v1/index")).unwrap();

    // Clients that go away give their slots back, and their spooled bytes with them.
    drop(paused);
    let freed = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = upload_status(&address, &ca, &owner).await;
            if !status.contains("503") || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The slot is free; the bytes are not a package.
    assert!(freed.contains("400"), "{freed}");
    assert!(
        served.open_fds() <= fds_before + 2,
        "descriptors left: {} (before: {fds_before})",
        served.open_fds()
    );
}

/// A registry in this process serving under `server_limits` with one upload and one
/// download slot.
fn start_strict(server_limits: ServerLimits) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let (store, bootstrap) = Store::open(dir.path(), 3600).unwrap();
    let public_key = store.public_key();
    let tls = tls::server_config(dir.path(), None, None).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let router = server::api(
        Arc::new(store),
        ApiLimits {
            max_downloads: 1,
            max_uploads: 1,
            ..ApiLimits::new(dir.path())
        },
    );
    runtime.spawn(server::serve_with(
        listener,
        tls,
        router,
        server_limits,
        std::future::pending(),
    ));
    let pem = std::fs::read(tls::dev_certificate_path(dir.path())).unwrap();
    let ca = warden_host::tls::certificates_from_pem_or_der(&pem).unwrap()[0].clone();
    Registry {
        owner: bootstrap.unwrap(),
        dir,
        url,
        ca,
        public_key,
        _runtime: runtime,
    }
}

/// The text-transform node padded with a custom section to over `payload` bytes.
fn padded_node(payload: usize) -> tempfile::NamedTempFile {
    let mut component = std::fs::read(plain()).unwrap();
    let mut section = vec![3, b'p', b'a', b'd'];
    section.resize(payload, 0);
    component.push(0);
    let mut size = section.len() as u64;
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        component.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    component.extend_from_slice(&section);
    let padded = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(padded.path(), &component).unwrap();
    padded
}

#[test]
fn stalled_transfers_lose_their_slots_to_the_timeouts() {
    let limits = ServerLimits {
        body_read_timeout: Duration::from_secs(1),
        send_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    };
    let registry = start_strict(limits.clone());
    let acme = registry.publisher("alice", "acme");
    let padded = padded_node(24 * 1024 * 1024);
    registry
        .publish(&acme.token, acme.pack(padded.path(), "big", "1.0.0"))
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (address, ca) = (registry.address(), registry.ca.clone());

    // An upload that stalls holds the only upload slot, then gets 408 and gives it back.
    let began = Instant::now();
    let mut stalled_upload =
        runtime.block_on(begin_upload(&address, &ca, &acme.token, 4 << 20, 64 * 1024));
    let small = acme.pack(&plain(), "small", "1.0.0");
    assert_eq!(status(registry.publish(&acme.token, small.clone())), 503);
    let answer = runtime.block_on(async {
        let mut answer = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), stalled_upload.read(&mut answer))
            .await
            .expect("a stalled upload got no answer within 10 s")
            .unwrap();
        String::from_utf8_lossy(&answer[..read]).into_owned()
    });
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
    assert!(began.elapsed() >= limits.body_read_timeout);
    registry.publish(&acme.token, small).unwrap();

    // A download the client stops reading holds the only download slot until the send
    // timeout ends its connection; the client never closes it.
    let request = format!(
        "GET /v1/packages/big/1.0.0 HTTP/1.1\r\nhost: {address}\r\nauthorization: PAT {}\r\n\r\n",
        acme.token
    );
    let stalled_download = runtime.block_on(async {
        let mut tls = connect_tls(address.clone(), ca.clone(), &[]).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut first = vec![0u8; 64 * 1024];
        tls.read_exact(&mut first).await.unwrap();
        tls
    });
    let began = Instant::now();
    let client = registry.client(&acme.token);
    let get = || block_on(client.send(hyper::Method::GET, "v1/packages/big/1.0.0", None, 64 << 20));
    assert!(
        matches!(get(), Err(ClientError::Status { status, .. }) if status == 503),
        "a second download was served while the first held the slot"
    );
    let mut served = None;
    while began.elapsed() < limits.send_timeout + Duration::from_secs(10) {
        if let Ok(bytes) = get() {
            served = Some(bytes);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = served.expect("the stalled download kept its slot past the send timeout");
    assert!(served.len() > 24 * 1024 * 1024);
    eprintln!(
        "the stalled download lost its slot after {:?}",
        began.elapsed()
    );
    drop(stalled_download);
}
