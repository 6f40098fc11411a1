//! A real `warden registry serve` under a few hundred connections that hold resources
//! without making progress, of every kind the server has a timeout for, while legitimate
//! clients use it. Its caps and timeouts are set by flags, its descriptors and memory are read
//! from /proc.

use super::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::task::JoinSet;

/// Every phase's timeout for this test: long enough that the held connections are all still
/// open while the legitimate clients are checked, short enough to see them all cut.
const TIMEOUT: Duration = Duration::from_secs(8);
/// Timeouts fire up to 25% late (the watchdog's tick); the rest is for a loaded machine.
const CUT_WITHIN: Duration = Duration::from_secs(8 * 5 / 4 + 10);
/// The per-address cap the child runs with.
const PER_ADDRESS: usize = 64;

impl Served {
    /// The harness's `Registry` helpers (users, keys, publish, install) pointed at the child.
    pub(super) fn handle(&self) -> Registry {
        let public_key = std::fs::read_to_string(self.data.path().join("registry.pub")).unwrap();
        Registry {
            dir: tempfile::tempdir().unwrap(),
            url: format!("https://{}", self.address),
            owner: self.owner.clone(),
            ca: self.ca.clone(),
            public_key: public_key.trim().to_string(),
            _runtime: tokio::runtime::Runtime::new().unwrap(),
        }
    }
}

/// A TCP connection from `from` (Linux routes all of 127/8 to loopback), so that each kind of
/// attacker has its own address under the per-address cap.
pub(super) async fn tcp_from(
    address: &str,
    from: Ipv4Addr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(address.parse().unwrap()).await
}

pub(super) async fn tls_from(address: &str, ca: &[u8], from: Ipv4Addr, alpn: &[&[u8]]) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let tcp = tcp_from(address, from).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

pub(super) fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Reads until the server closes the connection; false if it is still open past `within`.
async fn cut_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buffer = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        while let Ok(read) = stream.read(&mut buffer).await {
            if read == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// The attackers, each kind from its own loopback address.
struct Held {
    /// Finished their handshake and sent nothing.
    idle: Vec<Tls>,
    /// Sent the first half of the HTTP/2 preface.
    half_preface: Vec<Tls>,
    /// Send a header byte every 250 ms, forever; each task ends when its connection is cut.
    trickling: JoinSet<bool>,
    /// HTTP/2 connections that answer pings and send no request; each ends when cut.
    h2_idle: JoinSet<()>,
    /// At the per-address cap from one address.
    at_cap: Vec<Tls>,
}

impl Held {
    fn count(&self) -> usize {
        self.idle.len()
            + self.half_preface.len()
            + self.trickling.len()
            + self.h2_idle.len()
            + self.at_cap.len()
    }
}

async fn open_held(address: &str, ca: &[u8]) -> Held {
    let mut held = Held {
        idle: Vec::new(),
        half_preface: Vec::new(),
        trickling: JoinSet::new(),
        h2_idle: JoinSet::new(),
        at_cap: Vec::new(),
    };
    for i in 0..100 {
        held.idle
            .push(tls_from(address, ca, loopback(2 + i % 2), &[]).await);
    }
    for _ in 0..60 {
        let mut tls = tls_from(address, ca, loopback(4), &[]).await;
        tls.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        tls.flush().await.unwrap();
        held.half_preface.push(tls);
    }
    for _ in 0..60 {
        let mut tls = tls_from(address, ca, loopback(5), &[]).await;
        held.trickling.spawn(async move {
            let request = b"GET /v1/registry HTTP/1.1\r\nhost: registry\r\nx-padding: ";
            for byte in request.iter().chain(std::iter::repeat(&b'a')) {
                let written = async {
                    tls.write_all(&[*byte]).await?;
                    tls.flush().await
                };
                if written.await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            false
        });
    }
    for _ in 0..40 {
        let tls = tls_from(address, ca, loopback(6), &[b"h2"]).await;
        let io = hyper_util::rt::TokioIo::new(tls);
        let (sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        held.h2_idle.spawn(async move {
            let _sender: hyper::client::conn::http2::SendRequest<
                http_body_util::Empty<axum::body::Bytes>,
            > = sender;
            let _ = connection.await;
        });
    }
    for _ in 0..PER_ADDRESS {
        held.at_cap
            .push(tls_from(address, ca, loopback(7), &[]).await);
    }
    held
}

/// A connection past the per-address cap is closed at once, before its handshake.
async fn refused_past_the_cap(address: &str) {
    let mut tcp = tcp_from(address, loopback(7)).await.unwrap();
    assert!(
        cut_within(&mut tcp, Duration::from_secs(2)).await,
        "a connection past the per-address cap was kept"
    );
}

/// Waits for every held connection to be cut by the server.
async fn all_cut(held: Held) {
    let mut waiting = JoinSet::new();
    for mut stream in held
        .idle
        .into_iter()
        .chain(held.half_preface)
        .chain(held.at_cap)
    {
        waiting.spawn(async move { cut_within(&mut stream, CUT_WITHIN).await });
    }
    while let Some(cut) = waiting.join_next().await {
        assert!(cut.unwrap(), "a held connection outlived its timeout");
    }
    let (mut trickling, mut h2_idle) = (held.trickling, held.h2_idle);
    let trickled = tokio::time::timeout(CUT_WITHIN, async {
        while let Some(cut) = trickling.join_next().await {
            assert!(cut.unwrap());
        }
    });
    assert!(
        trickled.await.is_ok(),
        "trickled headers outlived the header timeout"
    );
    let idle = tokio::time::timeout(CUT_WITHIN, async {
        while h2_idle.join_next().await.is_some() {}
    });
    assert!(
        idle.await.is_ok(),
        "an idle HTTP/2 connection outlived the idle timeout"
    );
}

/// Runs `work` and returns how long it took; it must take under 5 s.
fn timed<T>(what: &str, work: impl FnOnce() -> T) -> (T, Duration) {
    let began = Instant::now();
    let done = work();
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{what} took {took:?} under attack"
    );
    (done, took)
}

#[test]
fn hundreds_of_connections_holding_without_progress_leave_a_real_registry_usable_and_bounded() {
    let timeout = format!("{}s", TIMEOUT.as_secs());
    let per_address = PER_ADDRESS.to_string();
    let mut flags = vec!["--max-connections", "400", "--max-connections-per-ip"];
    flags.push(&per_address);
    flags.extend(["--max-uploads", "2", "--max-downloads", "4"]);
    for flag in [
        "--handshake-timeout",
        "--first-byte-timeout",
        "--header-timeout",
        "--body-read-timeout",
        "--send-timeout",
        "--idle-timeout",
    ] {
        flags.extend([flag, &timeout]);
    }
    let served = Served::start(&flags);
    let registry = served.handle();
    let acme = registry.publisher("alice", "acme");
    let padded = padded_node(24 * 1024 * 1024);
    registry
        .publish(&acme.token, acme.pack(padded.path(), "big", "1.0.0"))
        .unwrap();
    registry
        .publish(&acme.token, acme.pack(&plain(), "small", "1.0.0"))
        .unwrap();
    let warm = host();
    install(&registry, &warm, &acme.token, "small").unwrap();
    // A whole download of the big package, so that the database's page cache holds it before
    // the baseline is taken: the stalled download below then costs only its own copy.
    let client = registry.client(&acme.token);
    let big = block_on(client.send(hyper::Method::GET, "v1/packages/big/1.0.0", None, 64 << 20));
    assert!(big.unwrap().len() > 24 << 20);
    // The baseline: every code path warmed up, no connection open.
    std::thread::sleep(Duration::from_secs(1));
    let (fds_before, rss_before) = (served.open_fds(), served.status("VmRSS:"));

    // The authenticated attacker: another publisher of acme.
    let mallory = registry.user("mallory", &["publisher"], Some("acme"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (address, ca, token) = (served.address.clone(), served.ca.clone(), mallory);
    let began = Instant::now();
    let (held, mut stalled_upload, stalled_download) = runtime.block_on(async {
        // An authenticated publish that stops after 64 KiB of a 4 MiB package, and an
        // authenticated download the client stops reading after 64 KiB.
        let upload = begin_upload(&address, &ca, &token, 4 << 20, 64 * 1024).await;
        let mut download = tls_from(&address, &ca, loopback(8), &[]).await;
        let request = format!(
            "GET /v1/packages/big/1.0.0 HTTP/1.1\r\nhost: {address}\r\nauthorization: PAT {token}\r\n\r\n"
        );
        download.write_all(request.as_bytes()).await.unwrap();
        let mut first = vec![0u8; 64 * 1024];
        download.read_exact(&mut first).await.unwrap();
        let held = open_held(&address, &ca).await;
        refused_past_the_cap(&address).await;
        (held, upload, download)
    });
    let opened_in = began.elapsed();
    let holding = held.count() + 2;
    std::thread::sleep(Duration::from_millis(500));
    let (fds_held, rss_held) = (served.open_fds(), served.status("VmRSS:"));
    eprintln!(
        "{holding} held connections opened in {opened_in:?}: descriptors {fds_before} -> {fds_held}, \
         RSS {rss_before} -> {rss_held} kB (+{} kB)",
        rss_held.saturating_sub(rss_before)
    );
    // Every held connection is open in the server (one descriptor each, the upload's spool
    // file besides), so what follows runs while they are held.
    assert!(
        began.elapsed() < TIMEOUT,
        "opening the connections took past their timeouts"
    );
    assert!(
        fds_held >= fds_before + holding,
        "only {} of {holding} held connections are open in the server",
        fds_held.saturating_sub(fds_before)
    );
    // Nothing but those: a descriptor per connection, a spool file, a few for the runtime.
    assert!(
        fds_held <= fds_before + holding + 8,
        "{fds_before} -> {fds_held} for {holding} connections"
    );
    // Each connection costs rustls's and hyper's buffers and a task, well under 64 KiB once
    // idle (measured: about 15 KiB). The stalled download holds its 24 MiB package, and
    // reading it from the database took a second 24 MiB that the allocator may keep; the
    // stalled upload holds up to 1 MiB of spool buffer.
    let grown = rss_held.saturating_sub(rss_before);
    let bound = holding as u64 * 64 + (2 * 24 + 2) * 1024;
    assert!(
        grown < bound,
        "{holding} held connections grew the registry by {grown} kB (bound {bound} kB)"
    );

    // Meanwhile, legitimate clients are served within seconds.
    let fresh = host();
    let (installed, install_took) = timed("an install", || {
        install(&registry, &fresh, &acme.token, "small")
    });
    installed.unwrap();
    let (synced, sync_took) = timed("a sync", || {
        block_on(install::sync(
            &registry.client(&acme.token),
            &warm.state,
            now(),
        ))
    });
    synced.unwrap();
    let (index, index_took) = timed("an authenticated request", || {
        block_on(registry.client(&acme.token).get_json::<Json>("v1/index"))
    });
    index.unwrap();
    let (published, publish_took) = timed("a publish", || {
        registry.publish(&acme.token, acme.pack(&plain(), "small", "1.0.1"))
    });
    published.unwrap();
    eprintln!(
        "under attack: install {install_took:?}, sync {sync_took:?}, index {index_took:?}, \
         publish {publish_took:?}"
    );
    assert!(
        began.elapsed() < TIMEOUT,
        "the legitimate requests ran after the timeouts had begun to cut"
    );

    // Then every held connection is cut within its timeout, the stalled upload with a 408.
    let answer = runtime.block_on(async {
        let mut answer = vec![0u8; 4096];
        let read = tokio::time::timeout(CUT_WITHIN, stalled_upload.read(&mut answer))
            .await
            .expect("the stalled upload got no answer")
            .unwrap();
        String::from_utf8_lossy(&answer[..read]).into_owned()
    });
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    runtime.block_on(all_cut(held));
    drop(stalled_upload);
    // The stalled download is never read, so the client cannot see the cut; the server's
    // descriptors can.
    let deadline = Instant::now() + CUT_WITHIN;
    while served.open_fds() > fds_before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut_after = began.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (fds_after, rss_after) = (served.open_fds(), served.status("VmRSS:"));
    eprintln!(
        "all cut after {cut_after:?}: descriptors {fds_after} (baseline {fds_before}), \
         RSS {rss_after} kB (baseline {rss_before}, held {rss_held})"
    );
    assert!(
        fds_after <= fds_before + 2,
        "descriptors left open: {fds_after} (baseline {fds_before})"
    );
    // The allocator keeps freed pages, so RSS need not fall; what must not happen is growth:
    // a second wave of the anonymous connections costs no more than the first did.
    drop(stalled_download);
    let held = runtime.block_on(open_held(&address, &ca));
    std::thread::sleep(Duration::from_millis(500));
    let rss_second = served.status("VmRSS:");
    runtime.block_on(all_cut(held));
    let deadline = Instant::now() + CUT_WITHIN;
    while served.open_fds() > fds_before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "second wave: RSS {rss_second} kB held (first {rss_held}), descriptors {} after",
        served.open_fds()
    );
    assert!(
        rss_second <= rss_held.max(rss_after) + 8 * 1024,
        "a second wave grew the registry to {rss_second} kB (first wave: {rss_held} kB)"
    );
    assert!(served.open_fds() <= fds_before + 2);
    // And it still serves.
    install(&registry, &host(), &acme.token, "small").unwrap();
}
