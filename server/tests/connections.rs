//! The server under attack over real TLS on loopback: hundreds of idle connections, half an
//! HTTP/2 preface, trickled headers, stalled and crawling bodies, clients that stop reading,
//! unanswered pings, and floods past the connection caps. Each time a legitimate request still
//! succeeds within seconds, the attacking connections are closed within their timeout, and the
//! process's file descriptors and memory stay bounded.
//!
//! The server runs in this process, so descriptor counts include the clients' own sockets;
//! the bounds below say which side each term is for. Tests that count are run one at a time.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use warden_server::{ServerLimits, body_timeout};

mod support;
use support::{Held, Served, loopback, open_fds, rss_kib, short};

/// Descriptor and memory counts are process-wide: the tests that take them run alone.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BIG: usize = 32 * 1024 * 1024;

fn big() -> Bytes {
    static BYTES: OnceLock<Bytes> = OnceLock::new();
    BYTES.get_or_init(|| Bytes::from(vec![7u8; BIG])).clone()
}

struct TestServer {
    address: SocketAddr,
    ca: CertificateDer<'static>,
    /// Large responses whose body was dropped (sent whole, or the connection gone).
    released: Arc<AtomicUsize>,
    _served: Served,
}

fn start(limits: ServerLimits) -> TestServer {
    start_with(limits, std::future::pending())
}

fn start_with(
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> TestServer {
    let released = Arc::new(AtomicUsize::new(0));
    let served = support::serve(limits, router(released.clone()), shutdown);
    TestServer {
        address: served.address,
        ca: served.ca.clone(),
        released,
        _served: served,
    }
}

fn router(released: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/big",
            get(move || {
                let released = released.clone();
                async move {
                    Body::new(Held {
                        bytes: big(),
                        released,
                    })
                }
            }),
        )
        .route("/upload", post(upload))
}

/// Reads a request body whole and answers its length, or 408 when it stalled.
async fn upload(body: Body) -> impl IntoResponse {
    let mut stream = body;
    let mut total = 0usize;
    while let Some(frame) = stream.frame().await {
        match frame {
            Ok(frame) => total += frame.data_ref().map_or(0, |data| data.len()),
            Err(error) if body_timeout(&error).is_some() => {
                return (StatusCode::REQUEST_TIMEOUT, error.to_string());
            }
            Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()),
        }
    }
    (StatusCode::OK, total.to_string())
}

async fn tcp_from(server: &TestServer, from: IpAddr) -> std::io::Result<TcpStream> {
    support::tcp_from(server.address, from).await
}

/// A TLS connection from `from` (Linux routes all of 127/8 to loopback), offering `alpn`.
async fn tls_from(
    server: &TestServer,
    from: IpAddr,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    support::tls_to((server.address, &server.ca), from, alpn).await
}

async fn tls(server: &TestServer) -> TlsStream<TcpStream> {
    tls_from(server, loopback(1), &[]).await.unwrap()
}

/// Sends one HTTP/1.1 request and reads the whole answer.
async fn exchange(stream: &mut TlsStream<TcpStream>, request: &str) -> Vec<u8> {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    answer
}

/// A legitimate request from 127.0.0.1; it must be answered within 5 s. Returns how long
/// it took.
async fn legitimate(server: &TestServer) -> Duration {
    let began = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = tls(server).await;
        exchange(
            &mut stream,
            "GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
        )
        .await
    })
    .await
    .expect("a legitimate request was not answered within 5 s");
    let text = String::from_utf8_lossy(&answered);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("ok"),
        "{text}"
    );
    began.elapsed()
}

/// Reads until the server closes the connection (or resets it); panics past `within`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) {
    let mut buffer = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server kept the connection open past {within:?}"));
}

/// Waits for every stream in `streams` to be closed by the server within `within`.
async fn all_closed_within<S>(streams: Vec<S>, within: Duration)
where
    S: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let count = streams.len();
    let mut waiting = JoinSet::new();
    for mut stream in streams {
        waiting.spawn(async move { closed_within(&mut stream, within).await });
    }
    let mut closed = 0;
    while let Some(result) = waiting.join_next().await {
        result.unwrap();
        closed += 1;
    }
    assert_eq!(closed, count);
}

/// Polls `condition` every 20 ms for up to `within`.
async fn eventually(within: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_idle_connections_do_not_keep_others_out_and_are_closed() {
    let _serial = SERIAL.lock().await;
    let limits = ServerLimits {
        first_byte_timeout: Duration::from_secs(4),
        ..short()
    };
    let server = start(limits.clone());
    legitimate(&server).await;
    let (fds_before, rss_before) = (open_fds(), rss_kib());
    let began = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tls(&server).await);
    }
    let opened_in = began.elapsed();
    // 300 handshaken connections held, and the server still answers.
    assert!(legitimate(&server).await < Duration::from_secs(3));
    let (fds_held, rss_held) = (open_fds(), rss_kib());
    // One descriptor per connection on each side, and a little slack for the runtime.
    assert!(
        fds_held <= fds_before + 2 * 300 + 20,
        "{fds_before} -> {fds_held}"
    );
    let grown = rss_held.saturating_sub(rss_before);
    eprintln!(
        "300 idle TLS connections (both ends) opened in {opened_in:?}: +{} descriptors, +{grown} KiB",
        fds_held - fds_before
    );
    assert!(
        grown < 64 * 1024,
        "300 idle connections grew memory by {grown} KiB"
    );
    // Each is closed once it has sent nothing for the first-byte timeout.
    all_closed_within(
        idle,
        opened_in + limits.first_byte_timeout + Duration::from_secs(2),
    )
    .await;
    assert!(began.elapsed() >= limits.first_byte_timeout);
    assert!(
        eventually(Duration::from_secs(2), || open_fds() <= fds_before + 5).await,
        "descriptors still open: {} (before: {fds_before})",
        open_fds()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_an_http2_preface_is_cut_after_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    // The first-byte timeout is long: only the preface rule can close these in time.
    let limits = ServerLimits {
        first_byte_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..short()
    };
    let server = start(limits.clone());
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut stream = tls_from(&server, loopback(1), &[b"h2"]).await.unwrap();
        stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        stream.flush().await.unwrap();
        stalled.push(stream);
    }
    let began = Instant::now();
    legitimate(&server).await;
    all_closed_within(stalled, limits.header_timeout + Duration::from_secs(3)).await;
    assert!(began.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_after_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let limits = ServerLimits {
        first_byte_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..short()
    };
    let server = start(limits.clone());
    let mut readers = Vec::new();
    let mut trickling = JoinSet::new();
    for _ in 0..100 {
        let stream = tls(&server).await;
        let (reader, mut writer) = tokio::io::split(stream);
        readers.push(reader);
        // A header byte every 100 ms, forever: each read makes progress, the headers never end.
        trickling.spawn(async move {
            let _ = writer
                .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nx-slow: ")
                .await;
            loop {
                if writer.write_all(b"a").await.is_err() || writer.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    legitimate(&server).await;
    all_closed_within(readers, limits.header_timeout + Duration::from_secs(3)).await;
    trickling.abort_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_crawling_bodies_get_408() {
    let _serial = SERIAL.lock().await;
    // The read timeout comes before the rate is judged, so each rule shows on its own.
    let limits = ServerLimits {
        rate_grace: Duration::from_secs(2),
        ..short()
    };
    let server = start(limits.clone());
    let request = "POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 1000000\r\n\r\n";
    let mut stalled = JoinSet::new();
    for _ in 0..50 {
        let mut stream = tls(&server).await;
        stalled.spawn(async move {
            stream.write_all(request.as_bytes()).await.unwrap();
            stream.write_all(&[1u8; 1000]).await.unwrap();
            let began = Instant::now();
            let answer = tokio::time::timeout(Duration::from_secs(5), async {
                let mut answer = vec![0u8; 1024];
                let read = stream.read(&mut answer).await.unwrap();
                answer.truncate(read);
                answer
            })
            .await
            .expect("no answer to a stalled body within 5 s");
            (
                began.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            )
        });
    }
    // A body crawling at 1 KiB/s, far below the 64 KiB/s minimum: it never stalls for a
    // whole read timeout, and is refused once the grace is over.
    let mut crawling = tls(&server).await;
    let crawler = tokio::spawn(async move {
        crawling.write_all(request.as_bytes()).await.unwrap();
        let began = Instant::now();
        let (mut reader, mut writer) = tokio::io::split(crawling);
        let trickle = tokio::spawn(async move {
            while writer.write_all(&[2u8; 100]).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut answer = vec![0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(6), reader.read(&mut answer))
            .await
            .expect("no answer to a crawling body within 6 s")
            .unwrap();
        trickle.abort();
        (
            began.elapsed(),
            String::from_utf8_lossy(&answer[..read]).into_owned(),
        )
    });
    legitimate(&server).await;
    while let Some(result) = stalled.join_next().await {
        let (took, answer) = result.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("stalled"), "{answer}");
        assert!(took >= limits.body_read_timeout, "{took:?}");
    }
    let (took, answer) = crawler.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("minimum"), "after {took:?}: {answer}");
    assert!(took >= limits.rate_grace, "{took:?}");
    // A body sent at once is read whole. (On a server with a longer read timeout: on a
    // machine loaded by parallel builds, a 4 MB body was once seen pausing over a second.)
    let server = start(ServerLimits {
        body_read_timeout: Duration::from_secs(5),
        ..limits
    });
    let mut stream = tls(&server).await;
    let mut request = b"POST /upload HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: 4000000\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(3u8, 4_000_000));
    let began = Instant::now();
    stream.write_all(&request).await.unwrap();
    // TLS keeps what the socket did not take yet in its own buffer: flush it, or the end of
    // the body waits for a write that never comes and the server rightly answers 408.
    stream.flush().await.unwrap();
    let written = began.elapsed();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("4000000"),
        "written in {written:?}, answered after {:?}: {answer}",
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_response_loses_it() {
    let _serial = SERIAL.lock().await;
    let limits = short();
    let server = start(limits.clone());
    let began = Instant::now();
    // Over HTTP/1.1: the socket's buffers fill, then writes block.
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut stream = tls(&server).await;
        stream
            .write_all(b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        let mut first = vec![0u8; 16 * 1024];
        stream.read_exact(&mut first).await.unwrap();
        stalled.push(stream);
    }
    // Over HTTP/2: the stream's window is not replenished, so the server cannot send; the
    // connection itself stays healthy (pings are answered by the client's connection task).
    let io = hyper_util::rt::TokioIo::new(tls_from(&server, loopback(1), &[b"h2"]).await.unwrap());
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let h2_connection = tokio::spawn(connection);
    let request = hyper::Request::get("https://127.0.0.1/big")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let mut h2_body = response.into_body();
    assert!(h2_body.frame().await.unwrap().unwrap().is_data());
    // Every stalled response is dropped (its resources freed) once the send timeout passes.
    let within = limits.send_timeout + Duration::from_secs(4);
    assert!(
        eventually(within, || server.released.load(Ordering::SeqCst) == 7).await,
        "released {} of 7 stalled responses in {:?}",
        server.released.load(Ordering::SeqCst),
        began.elapsed()
    );
    all_closed_within(stalled, Duration::from_secs(5)).await;
    // The HTTP/2 connection was ended, so the client's connection task finished.
    tokio::time::timeout(Duration::from_secs(5), h2_connection)
        .await
        .expect("the HTTP/2 connection with the stalled stream stayed open")
        .unwrap()
        .ok();
    drop(h2_body);
    // A client that reads gets the whole response, well above the minimum send rate.
    let mut stream = tls(&server).await;
    let answer = exchange(
        &mut stream,
        "GET /big HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.len() > BIG && answer.starts_with(b"HTTP/1.1 200"));
    legitimate(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_are_closed_when_idle_or_when_pings_go_unanswered() {
    let _serial = SERIAL.lock().await;
    let limits = ServerLimits {
        idle_timeout: Duration::from_secs(1),
        ..short()
    };
    let server = start(limits.clone());
    // A well-behaved client that answers pings but sends nothing more gets a GOAWAY.
    let io = hyper_util::rt::TokioIo::new(tls_from(&server, loopback(1), &[b"h2"]).await.unwrap());
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let idle = tokio::spawn(connection);
    let request = hyper::Request::get("https://127.0.0.1/")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), idle)
        .await
        .expect("an idle HTTP/2 connection stayed open")
        .unwrap()
        .ok();
    assert!(began.elapsed() >= limits.idle_timeout - Duration::from_millis(300));

    // A client that speaks HTTP/2 but never answers a ping is cut, with idleness out of play.
    let server = start(ServerLimits {
        idle_timeout: Duration::from_secs(60),
        ..short()
    });
    let mut silent = tls_from(&server, loopback(1), &[b"h2"]).await.unwrap();
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // Reading takes the server's frames (its pings included) without answering them.
    let within =
        limits.h2_keep_alive_interval + limits.h2_keep_alive_timeout + Duration::from_secs(3);
    closed_within(&mut silent, within).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address_and_in_total() {
    let _serial = SERIAL.lock().await;
    let limits = ServerLimits {
        max_connections: 40,
        max_connections_per_ip: 10,
        first_byte_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..short()
    };
    let server = start(limits);
    let mut from_two = Vec::new();
    for _ in 0..10 {
        from_two.push(tls_from(&server, loopback(2), &[]).await.unwrap());
    }
    // The eleventh from the same address is closed before its handshake completes.
    let refused = tokio::time::timeout(Duration::from_secs(2), tls_from(&server, loopback(2), &[]))
        .await
        .expect("a refused connection was left hanging");
    assert!(
        refused.is_err(),
        "an 11th connection from one address was admitted"
    );
    // Other addresses are not affected.
    legitimate(&server).await;
    let mut others = Vec::new();
    for last in 3..=5 {
        for _ in 0..10 {
            others.push(tls_from(&server, loopback(last), &[]).await.unwrap());
        }
    }
    // 40 held: now every address is refused.
    let fds_before = open_fds();
    let mut flood = Vec::new();
    for _ in 0..300 {
        // Connected (the kernel accepts), then closed by the server at once.
        if let Ok(stream) = tcp_from(&server, loopback(6)).await {
            flood.push(stream);
        }
    }
    assert!(tls_from(&server, loopback(7), &[]).await.is_err());
    let mut buffer = [0u8; 1];
    for stream in &mut flood {
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer))
            .await
            .expect("a refused connection was not closed at once");
        assert!(matches!(read, Ok(0) | Err(_)));
    }
    // The flood's client sockets are the only new descriptors: the server kept none.
    let fds_flood = open_fds();
    assert!(
        fds_flood <= fds_before + flood.len() + 10,
        "{fds_before} -> {fds_flood} with {} flood sockets",
        flood.len()
    );
    drop(flood);
    // A place given back is a place taken again.
    drop(from_two.pop());
    let admitted = async {
        loop {
            if let Ok(stream) = tls_from(&server, loopback(6), &[]).await {
                let mut stream = stream;
                return exchange(
                    &mut stream,
                    "GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), admitted)
        .await
        .expect("a freed place was not given to a new connection");
    assert!(answer.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_closes_connections_within_the_grace() {
    let _serial = SERIAL.lock().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = ServerLimits {
        first_byte_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..short()
    };
    let server = start_with(limits.clone(), async move {
        let _ = stopped.await;
    });
    legitimate(&server).await;
    // A connection in the middle of a large response, and one that sent nothing.
    let mut busy = tls(&server).await;
    busy.write_all(b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 1024];
    busy.read_exact(&mut first).await.unwrap();
    let quiet = tls(&server).await;
    stop.send(()).unwrap();
    let within = limits.shutdown_grace + Duration::from_secs(3);
    // The busy one finishes its response (it reads) and the quiet one is closed.
    let mut rest = Vec::new();
    tokio::time::timeout(within, busy.read_to_end(&mut rest))
        .await
        .expect("a response in flight did not finish within the grace")
        .ok();
    assert!(
        rest.len() + first.len() > BIG,
        "the response in flight was cut"
    );
    all_closed_within(vec![quiet], within).await;
    assert!(
        eventually(Duration::from_secs(2), || {
            std::net::TcpStream::connect(server.address).is_err()
        })
        .await,
        "the server still accepts after shutdown"
    );
}
