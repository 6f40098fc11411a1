//! Attacks on the server that hold or burn resources in ways connections.rs does not try:
//! HTTP/2 frame floods (rapid reset, CONTINUATION, PING and SETTINGS floods, empty DATA
//! frames), responses given no flow-control window, and pipelined HTTP/1.1 requests behind a
//! stalled response. Frames are written by hand, so the client does exactly what an attacker
//! would and nothing a well-behaved library adds.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use warden_server::ServerLimits;

mod support;
use support::{Held, Served, loopback, rss_kib, short};

/// Counts are process-wide: the tests run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the handlers saw: requests that reached the router, and large responses dropped.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    released: Arc<AtomicUsize>,
}

struct TestServer {
    address: SocketAddr,
    ca: CertificateDer<'static>,
    seen: Arc<Seen>,
    _served: Served,
}

fn start(limits: ServerLimits) -> TestServer {
    let seen = Arc::new(Seen::default());
    let served = support::serve(limits, router(seen.clone()), std::future::pending());
    TestServer {
        address: served.address,
        ca: served.ca.clone(),
        seen,
        _served: served,
    }
}

fn router(seen: Arc<Seen>) -> Router {
    let counted = seen.clone();
    Router::new()
        .route(
            "/",
            get(move || {
                counted.requests.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        )
        .route(
            "/big",
            get(move || {
                let seen = seen.clone();
                seen.requests.fetch_add(1, Ordering::SeqCst);
                async move {
                    Body::new(Held {
                        bytes: Bytes::from(vec![7u8; 32 << 20]),
                        released: seen.released.clone(),
                    })
                }
            }),
        )
}

async fn tls(server: &TestServer, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    support::tls_to((server.address, &server.ca), loopback(1), alpn)
        .await
        .unwrap()
}

/// A legitimate HTTP/1.1 request; must be answered within 5 s.
async fn legitimate(server: &TestServer) {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = tls(server, &[]).await;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    })
    .await
    .expect("a legitimate request was not answered within 5 s");
}

// HTTP/2 frames, by hand (RFC 9113 §4.1, §6).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut frame = length.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HPACK block for `GET https://127.0.0.1{path}`, literals without indexing so the
/// dynamic table stays empty.
fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    for (name_index, value) in [(4u8, path), (1u8, "127.0.0.1")] {
        block.push(name_index); // literal without indexing, indexed name
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// An HTTP/2 connection that has sent its preface and settings; a task drains what the
/// server sends, from the start if `read`, otherwise once `start_reading` is called.
struct RawH2 {
    writer: tokio::io::WriteHalf<TlsStream<TcpStream>>,
    reading: Arc<tokio::sync::Notify>,
    closed: Arc<tokio::sync::Notify>,
    closed_flag: Arc<std::sync::atomic::AtomicBool>,
}

impl RawH2 {
    async fn open(server: &TestServer, read: bool) -> RawH2 {
        let stream = tls(server, &[b"h2"]).await;
        let (mut reader, mut writer) = tokio::io::split(stream);
        writer
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        writer.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        writer.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
        let reading = Arc::new(tokio::sync::Notify::new());
        let closed = Arc::new(tokio::sync::Notify::new());
        let closed_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (start, notify, flag) = (reading.clone(), closed.clone(), closed_flag.clone());
        tokio::spawn(async move {
            if !read {
                start.notified().await;
            }
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(read) = reader.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
            }
            flag.store(true, Ordering::SeqCst);
            notify.notify_waiters();
        });
        RawH2 {
            writer,
            reading,
            closed,
            closed_flag,
        }
    }

    /// Drains what the server sent, so that its end of the connection can be seen.
    fn start_reading(&self) {
        self.reading.notify_one();
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    fn is_closed(&self) -> bool {
        self.closed_flag.load(Ordering::SeqCst)
    }

    async fn closed_within(&self, within: Duration) -> bool {
        let waiting = self.closed.notified();
        if self.is_closed() {
            return true;
        }
        tokio::time::timeout(within, waiting).await.is_ok() || self.is_closed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_does_not_run_handlers_past_the_stream_limit() {
    let _serial = SERIAL.lock().await;
    let server = start(short());
    let mut attacker = RawH2::open(&server, true).await;
    let block = get_block("/");
    let began = Instant::now();
    let mut sent = 0u32;
    // CVE-2023-44487: open a stream and cancel it at once, thousands of times, so that no
    // stream is ever open long enough to count against the concurrent-stream limit.
    for stream in (1..20_000u32).step_by(2) {
        let mut burst = frame(HEADERS, END_STREAM | END_HEADERS, stream, &block);
        burst.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
        if attacker.send(&burst).await.is_err() {
            break;
        }
        sent += 1;
    }
    let closed = attacker.closed_within(Duration::from_secs(5)).await;
    let handled = server.seen.requests.load(Ordering::SeqCst);
    eprintln!(
        "rapid reset: {sent} streams sent in {:?}, {handled} reached the handler, connection closed: {closed}",
        began.elapsed()
    );
    assert!(closed, "a rapid-reset connection was left open");
    assert!(
        handled < 1000,
        "{handled} of {sent} reset streams ran the handler"
    );
    legitimate(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut() {
    let _serial = SERIAL.lock().await;
    let server = start(short());
    let mut attacker = RawH2::open(&server, true).await;
    let rss_before = rss_kib();
    // CVE-2024-27316 style: a header block that never ends, in 16 KiB CONTINUATION frames
    // of header bytes.
    let mut block = get_block("/");
    block.extend([0x00, 0x01, b'x', 0x7f, 0x80, 0x7f]); // a literal of 16,383 bytes follows
    attacker
        .send(&frame(HEADERS, END_STREAM, 1, &block))
        .await
        .unwrap();
    let filler = vec![b'a'; 16 * 1024 - 1];
    let mut sent = 0usize;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(5) {
        if attacker
            .send(&frame(CONTINUATION, 0, 1, &filler))
            .await
            .is_err()
        {
            break;
        }
        sent += filler.len();
    }
    let closed = attacker.closed_within(Duration::from_secs(3)).await;
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!(
        "CONTINUATION flood: {sent} bytes accepted in {:?}, closed: {closed}, RSS +{grown} kB",
        began.elapsed()
    );
    assert!(closed, "an endless header block was not cut");
    assert!(
        sent < 16 << 20,
        "the server took {sent} bytes of one header block"
    );
    legitimate(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_settings_floods_from_a_client_that_never_reads_are_cut() {
    let _serial = SERIAL.lock().await;
    let limits = ServerLimits {
        // Pings of the server's own and idleness out of play: only the send timeout may act.
        idle_timeout: Duration::from_secs(60),
        h2_keep_alive_interval: Duration::from_secs(60),
        ..short()
    };
    let server = start(limits.clone());
    let rss_before = rss_kib();
    let mut floods = Vec::new();
    for kind in [PING, SETTINGS] {
        let mut attacker = RawH2::open(&server, false).await;
        let payload: &[u8] = if kind == PING { &[1; 8] } else { &[] };
        let flood = frame(kind, 0, 0, payload).repeat(1000);
        let began = Instant::now();
        let mut sent = 0usize;
        // The server must answer each one; a client that never reads fills its socket, and
        // then the server stops reading or buffers answers.
        while began.elapsed() < Duration::from_secs(3) {
            match tokio::time::timeout(Duration::from_millis(500), attacker.send(&flood)).await {
                Ok(Ok(())) => sent += 1000,
                Ok(Err(_)) => break,
                // The server stopped reading: the flood is held back by TCP.
                Err(_) => break,
            }
        }
        eprintln!("{kind} flood: {sent} frames sent in {:?}", began.elapsed());
        floods.push(attacker);
    }
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!("RSS after the floods: +{grown} kB");
    assert!(
        grown < 32 * 1024,
        "the floods grew the server by {grown} kB"
    );
    legitimate(&server).await;
    // Neither reads, so the server's answers block, and the send timeout ends them: once the
    // timeout has passed, draining what the server sent reaches the end of the connection.
    tokio::time::sleep(limits.send_timeout * 5 / 4 + Duration::from_secs(1)).await;
    for attacker in &floods {
        attacker.start_reading();
        assert!(
            attacker.closed_within(Duration::from_secs(3)).await,
            "a flooding client that never reads kept its connection past the send timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_data_frames_are_cut() {
    let _serial = SERIAL.lock().await;
    let server = start(short());
    let mut attacker = RawH2::open(&server, true).await;
    // A POST whose body is an endless run of empty DATA frames: CPU for nothing.
    let mut block = vec![0x83, 0x87]; // :method POST, :scheme https
    block.extend([0x04, 1, b'/', 0x01, 9]);
    block.extend(b"127.0.0.1");
    attacker
        .send(&frame(HEADERS, END_HEADERS, 1, &block))
        .await
        .unwrap();
    let empties = frame(DATA, 0, 1, &[]).repeat(10_000);
    let began = Instant::now();
    let mut sent = 0usize;
    while began.elapsed() < Duration::from_secs(5) && !attacker.is_closed() {
        if attacker.send(&empties).await.is_err() {
            break;
        }
        sent += 10_000;
    }
    let closed = attacker.closed_within(Duration::from_secs(3)).await;
    eprintln!(
        "empty DATA flood: {sent} frames in {:?}, closed: {closed}",
        began.elapsed()
    );
    assert!(closed, "a flood of empty DATA frames was not cut");
    legitimate(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_given_no_window_is_dropped_after_the_send_timeout() {
    let _serial = SERIAL.lock().await;
    let limits = ServerLimits {
        idle_timeout: Duration::from_secs(60),
        ..short()
    };
    let server = start(limits.clone());
    // A client that answers pings but gives every stream a window of zero: the server can
    // send headers, never a byte of the body.
    let io = hyper_util::rt::TokioIo::new(tls(&server, &[b"h2"]).await);
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake(io)
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get("https://127.0.0.1/big")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let began = Instant::now();
    let response = sender.send_request(request).await;
    eprintln!("response head: {:?}", response.as_ref().map(|r| r.status()));
    let _held = response;
    let ended = tokio::time::timeout(limits.send_timeout + Duration::from_secs(4), connection)
        .await
        .is_ok();
    eprintln!(
        "zero window: connection ended {ended} after {:?}; released {}",
        began.elapsed(),
        server.seen.released.load(Ordering::SeqCst)
    );
    assert!(ended, "a response given no window kept its connection");
    // The stream's task drops the body just after the connection ends.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.seen.released.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.seen.released.load(Ordering::SeqCst), 1);
}

/// Reads until the server closes the connection; false if it is still open past `within`.
async fn cut_within(stream: &mut TlsStream<TcpStream>, within: Duration) -> bool {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_after_a_get_is_answered_does_not_keep_the_connection() {
    let _serial = SERIAL.lock().await;
    let limits = ServerLimits {
        // Only the header timeout (1 s) and the idle one (3 s) may act.
        idle_timeout: Duration::from_secs(3),
        ..short()
    };
    let server = start(limits.clone());
    let mut stream = tls(&server, &[]).await;
    // A GET that announces a 10 MB body the handler never reads, then trickles it.
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\ncontent-length: 10000000\r\n\r\n")
        .await
        .unwrap();
    let began = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let trickle = tokio::spawn(async move {
        loop {
            if writer.write_all(&[b'a'; 100]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buffer = vec![0u8; 4096];
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(read) = reader.read(&mut buffer).await {
            if read == 0 {
                break;
            }
        }
    })
    .await
    .is_ok();
    eprintln!(
        "GET with a trickled body: cut {cut} after {:?}",
        began.elapsed()
    );
    trickle.abort();
    assert!(
        cut,
        "a trickled body after an answered GET kept the connection"
    );
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_behind_a_response_never_read_are_dropped_with_it() {
    let _serial = SERIAL.lock().await;
    let limits = short();
    let server = start(limits.clone());
    let mut stream = tls(&server, &[]).await;
    // One large response, then ten thousand requests pipelined behind it, never read.
    let mut requests = b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n".to_vec();
    requests.extend(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n".repeat(10_000));
    let rss_before = rss_kib();
    let began = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.write_all(&requests)).await;
    // Nothing is read until the send timeout has passed; then what the sockets hold drains
    // and the connection ends.
    tokio::time::sleep(limits.send_timeout * 5 / 4 + Duration::from_secs(1)).await;
    let handled = server.seen.requests.load(Ordering::SeqCst);
    let cut = cut_within(&mut stream, Duration::from_secs(3)).await;
    eprintln!(
        "pipelined: cut {cut} after {:?}, {handled} requests handled, RSS +{} kB",
        began.elapsed(),
        rss_kib().saturating_sub(rss_before)
    );
    assert!(
        cut,
        "a connection with pipelined requests behind a stall stayed open"
    );
    // Requests wait behind the response in hyper's buffer: none is handled past the stall.
    assert_eq!(
        handled, 1,
        "requests behind a stalled response were handled"
    );
    assert_eq!(server.seen.released.load(Ordering::SeqCst), 1);
    legitimate(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_unfinished_headers_cost_bounded_memory_per_connection() {
    let _serial = SERIAL.lock().await;
    let limits = ServerLimits {
        header_timeout: Duration::from_secs(10),
        first_byte_timeout: Duration::from_secs(10),
        ..short()
    };
    let server = start(limits);
    legitimate(&server).await;
    // A head of 390 KB (hyper's default buffer took it whole) ends the connection.
    let mut huge = b"GET / HTTP/1.1\r\nhost: test\r\nx-pad: ".to_vec();
    huge.resize(390 * 1024, b'a');
    let mut stream = tls(&server, &[]).await;
    let _ = stream.write_all(&huge).await;
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    assert!(ended.is_ok(), "a 390 KB request head was kept");
    // 100 connections, each with 60 KiB of a head sent and the head left open.
    let rss_before = rss_kib();
    let mut header = b"GET / HTTP/1.1\r\nhost: test\r\nx-pad: ".to_vec();
    header.resize(60 * 1024, b'a');
    let mut open = Vec::new();
    for _ in 0..100 {
        let mut stream = tls(&server, &[]).await;
        stream.write_all(&header).await.unwrap();
        stream.flush().await.unwrap();
        open.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_kib().saturating_sub(rss_before);
    let per_connection = grown / 100;
    eprintln!(
        "100 connections with 60 KiB of unfinished headers: RSS +{grown} kB, {per_connection} kB each (client and server)"
    );
    legitimate(&server).await;
    // The server holds at most 64 KiB of an unfinished head per connection (it held 440 KB
    // with hyper's default); TLS buffers and the task come on top.
    assert!(per_connection < 192, "{per_connection} kB per connection");
}
