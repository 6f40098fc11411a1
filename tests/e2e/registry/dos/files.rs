//! A registry whose process has few file descriptors: connections must not take the ones its
//! own files need (an upload's spool file), and connections past what it can hold are refused
//! at once rather than left waiting unaccepted.

use super::flood::{loopback, tcp_from};
use super::*;

/// The status line of the answer to an upload of `package` on `tls`.
async fn upload_on(tls: &mut Tls, address: &str, token: &str, package: &[u8]) -> String {
    let head = format!(
        "POST /v1/packages HTTP/1.1\r\nhost: {address}\r\nauthorization: PAT {token}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        package.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(package).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut answer))
        .await
        .expect("no answer to an upload within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[test]
fn with_few_file_descriptors_connections_leave_room_for_the_registrys_own_files() {
    // 64 descriptors and the default --max-connections of 512; the flood is held for longer
    // than the test, so only a refusal can end its connections.
    let served = Served::start_with_files(
        Some(64),
        &["--handshake-timeout", "60s", "--first-byte-timeout", "60s"],
    );
    let registry = served.handle();
    let acme = registry.publisher("alice", "acme");
    let package = acme.pack(&plain(), "small", "1.0.0");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (address, ca) = (served.address.clone(), served.ca.clone());
    runtime.block_on(async {
        // A publisher connects, then 120 connections from two addresses (under the
        // per-address cap) take every descriptor the process has.
        let mut publisher = connect_tls(address.clone(), ca.clone(), &[]).await;
        let mut flood = Vec::new();
        for i in 0..120 {
            flood.push(tcp_from(&address, loopback(2 + i % 2)).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Those past what the registry can hold are closed at once, not left unaccepted.
        let mut refused = 0;
        for tcp in &mut flood {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut byte)).await;
            if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
                refused += 1;
            }
        }
        let open_fds = served.open_fds();
        eprintln!("64 descriptors: {refused} of 120 flood connections refused, {open_fds} open");
        // The publish gets its spool file, and a 201.
        let status = upload_on(&mut publisher, &address, &acme.token, &package).await;
        assert!(status.contains("201"), "{status}");
        assert!(refused >= 120 - 64, "only {refused} of 120 were refused");
        drop(flood);
    });
    // And once the flood has gone, hosts install.
    install(&registry, &host(), &acme.token, "small").unwrap();
}
