//! One token holder cannot take every transfer slot: a client that reads its downloads (or
//! sends its uploads) just above the minimum rate makes progress, so no timeout ends it, and
//! with a 24 MiB package at 16 KiB/s a slot is held for 25 minutes.

use super::*;

/// Starts a download of `path` and reads its first 64 KiB; the caller then reads slowly.
async fn begin_download(address: &str, ca: &[u8], token: &str, path: &str) -> (Tls, String) {
    let mut tls = connect_tls(address.to_string(), ca.to_vec(), &[]).await;
    let request =
        format!("GET /{path} HTTP/1.1\r\nhost: {address}\r\nauthorization: PAT {token}\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 64 * 1024];
    let read = tls.read(&mut head).await.unwrap();
    let status = String::from_utf8_lossy(&head[..read.min(12)]).into_owned();
    (tls, status)
}

/// Reads `tls` at about 64 KiB/s (four times the minimum rate) until dropped.
fn read_slowly(mut tls: Tls) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(read) = tls.read(&mut buffer).await {
            if read == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

#[test]
fn one_user_reading_slowly_cannot_take_every_download_slot() {
    // The default share: a quarter of the slots.
    let served = Served::start(&["--max-downloads", "4", "--max-downloads-per-user", "1"]);
    let registry = served.handle();
    let acme = registry.publisher("alice", "acme");
    let padded = padded_node(24 * 1024 * 1024);
    registry
        .publish(&acme.token, acme.pack(padded.path(), "big", "1.0.0"))
        .unwrap();
    registry
        .publish(&acme.token, acme.pack(&plain(), "small", "1.0.0"))
        .unwrap();
    let mallory = registry.user("mallory", &["reader"], None);
    let reader = registry.user("bob", &["reader"], None);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (address, ca) = (served.address.clone(), served.ca.clone());
    // Mallory asks for every slot and reads each download slowly, but fast enough.
    let (statuses, readers) = runtime.block_on(async {
        let mut statuses = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (tls, status) =
                begin_download(&address, &ca, &mallory, "v1/packages/big/1.0.0").await;
            statuses.push(status);
            readers.push(read_slowly(tls));
        }
        (statuses, readers)
    });
    eprintln!("mallory's downloads: {statuses:?}");
    assert!(statuses[0].contains("200"), "{statuses:?}");
    // Her share is a quarter of the slots: the rest are refused with 429.
    assert!(
        statuses[1..].iter().all(|status| status.contains("429")),
        "{statuses:?}"
    );
    // Everyone else is still served while hers run.
    std::thread::sleep(Duration::from_secs(1));
    install(&registry, &host(), &reader, "small").unwrap();
    let client = registry.client(&reader);
    let big = block_on(client.send(hyper::Method::GET, "v1/packages/big/1.0.0", None, 64 << 20));
    assert!(big.unwrap().len() > 24 << 20);
    for reader in readers {
        reader.abort();
    }
}
