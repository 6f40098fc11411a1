//! HTTP/2 streams opened and reset as fast as a client can write them, against a real
//! registry: each reset stream closes at once, so the limit on concurrent streams never
//! binds, and whatever work a handler started must not outlive the stream.

use super::flood::{loopback, tls_from};
use super::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// HEADERS (END_STREAM | END_HEADERS) for `GET https://registry{path}`, HPACK literals
/// without indexing.
fn get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87];
    for (name, value) in [(4u8, path), (1u8, "registry")] {
        block.push(name);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    frame(1, 0x5, stream, &block)
}

fn reset(stream: u32) -> Vec<u8> {
    frame(3, 0, stream, &8u32.to_be_bytes())
}

/// The error code of the first GOAWAY among `frames`.
fn goaway_code(frames: &[u8]) -> Option<u32> {
    let mut at = 0;
    while at + 9 <= frames.len() {
        let length = u32::from_be_bytes([0, frames[at], frames[at + 1], frames[at + 2]]) as usize;
        if frames[at + 3] == 7 && at + 17 <= frames.len() {
            let code = &frames[at + 13..at + 17];
            return Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
        }
        at += 9 + length;
    }
    None
}

#[test]
fn streams_reset_after_they_are_accepted_end_the_connection_and_pile_up_nothing() {
    let served = Served::start(&[]);
    let registry = served.handle();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (address, ca) = (served.address.clone(), served.ca.clone());
    let rss_before = served.status("VmRSS:");
    let threads_before = served.status("Threads:");
    eprintln!("before: RSS {rss_before} kB, {threads_before} threads");
    let (sent, took, goaway) = runtime.block_on(async {
        let tls = tls_from(&address, &ca, loopback(2), &[b"h2"]).await;
        let (mut reader, mut writer) = tokio::io::split(tls);
        let goaway = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut sink = vec![0u8; 64 * 1024];
            while let Ok(read) = reader.read(&mut sink).await {
                if read == 0 {
                    break;
                }
                all.extend_from_slice(&sink[..read]);
            }
            goaway_code(&all)
        });
        writer
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        writer.write_all(&frame(4, 0, 0, &[])).await.unwrap();
        // Batches of 32 public requests (/v1/roots reads the database); each batch also
        // resets the one before, which the server has accepted by then. Until the server ends
        // the connection, for up to 30 s: how long h2 takes depends on how many streams it had
        // finished before their reset arrived, which depends on the machine's load (this runs
        // beside the other tests).
        let began = Instant::now();
        let mut sent = 0u32;
        let mut stream = 1u32;
        while began.elapsed() < Duration::from_secs(30) && !goaway.is_finished() {
            let mut batch = Vec::new();
            for i in 0..32 {
                batch.extend(get(stream + 2 * i, "/v1/roots"));
                if stream > 64 {
                    batch.extend(reset(stream + 2 * i - 64));
                }
            }
            stream += 64;
            if writer.write_all(&batch).await.is_err() {
                break;
            }
            sent += 32;
            // Paced, so the server has accepted a batch before it is reset.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = began.elapsed();
        let code = tokio::time::timeout(Duration::from_secs(5), goaway).await;
        (
            sent,
            took,
            code.expect("the server kept the connection").unwrap(),
        )
    });
    let (rss_during, threads_during) = (served.status("VmRSS:"), served.status("Threads:"));
    let began = Instant::now();
    let roots = block_on(
        registry
            .client(&registry.owner)
            .get_json::<Json>("v1/roots"),
    );
    let answered_in = began.elapsed();
    eprintln!(
        "{sent} streams opened and reset in {took:?}: RSS {rss_before} -> {rss_during} kB, \
         threads {threads_before} -> {threads_during}; a legitimate request answered in {answered_in:?}"
    );
    roots.unwrap();
    assert!(answered_in < Duration::from_secs(5));
    // h2 counts the resets and ends the connection with ENHANCE_YOUR_CALM. How many streams
    // it takes depends on how many the server had finished before their reset arrived
    // (128 alone, 26,624 in 5 s under a loaded machine): those are plain requests, which no
    // rate limit bounds. What must hold is that nothing piles up.
    assert_eq!(goaway, Some(11), "GOAWAY error code");
    let grown = rss_during.saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "{sent} reset streams grew the registry by {grown} kB"
    );
}
