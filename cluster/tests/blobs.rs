//! Packages as blobs in S3-compatible storage (moto on loopback): created only if absent, read
//! back only when they hash to their name. Skipped, with the reason, where moto is not installed.

use sha2::Digest;
use warden_cluster::test_services::{S3, own_s3};
use warden_cluster::{BlobError, BlobSettings, BlobStore, Stored};

fn sha(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn store(server: &S3, prefix: &str) -> BlobStore {
    let settings = BlobSettings {
        url: server.url(prefix),
        endpoint: Some(server.endpoint()),
        region: None,
        ca_certs: Vec::new(),
    };
    BlobStore::open_with_keys(&settings, S3::KEY_ID, S3::SECRET).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_in_s3_are_created_once_and_read_back_only_when_they_hash_to_their_name() {
    let Some(server) = own_s3() else { return };
    let store = store(&server, "a");
    let bytes = vec![7u8; 300_000];
    let name = sha(&bytes);
    assert_eq!(store.get(&name, 300_000).await.unwrap(), None);

    // Daemons storing the same package at once: each succeeds, one object results.
    let puts: Vec<_> = (0..8)
        .map(|_| {
            let (store, name, bytes) = (store.clone(), name.clone(), bytes.clone());
            tokio::spawn(async move { store.put(&name, &bytes).await })
        })
        .collect();
    let mut created = 0;
    for put in puts {
        if put.await.unwrap().unwrap() == Stored::Created {
            created += 1;
        }
    }
    assert!(created >= 1);
    // The store honours create-if-absent: a later put finds the blob there.
    assert_eq!(
        store.put(&name, &bytes).await.unwrap(),
        Stored::AlreadyThere
    );
    assert_eq!(
        store.get(&name, 300_000).await.unwrap(),
        Some(bytes.clone())
    );

    // Another prefix is another namespace.
    assert_eq!(
        self::store(&server, "b").get(&name, 300_000).await.unwrap(),
        None
    );

    // Bytes changed in the store behind warden's back are refused, not returned.
    store.overwrite_unchecked(&name, b"forged").await.unwrap();
    let refused = store.get(&name, 300_000).await.unwrap_err();
    assert!(matches!(refused, BlobError::Corrupt { .. }), "{refused}");
    assert!(
        refused.to_string().contains("is not the 300000 bytes"),
        "{refused}"
    );
    // ...and removed, so that the package can be stored again.
    assert_eq!(store.get(&name, 300_000).await.unwrap(), None);
    assert_eq!(store.put(&name, &bytes).await.unwrap(), Stored::Created);
    // Bytes of the right size that do not hash to the name: the same.
    let mut forged = bytes.clone();
    forged[0] ^= 1;
    store.overwrite_unchecked(&name, &forged).await.unwrap();
    let refused = store.get(&name, 300_000).await.unwrap_err();
    assert!(refused.to_string().contains("does not hash"), "{refused}");
    assert_eq!(store.get(&name, 300_000).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_does_not_answer_is_an_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = BlobSettings {
        url: "s3://warden".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: None,
        ca_certs: Vec::new(),
    };
    let store = BlobStore::open_with_keys(&settings, "k", "s").unwrap();
    let error = store.get(&sha(b"x"), 1).await.unwrap_err();
    assert!(matches!(error, BlobError::Store { .. }), "{error}");
    // The cause is in the message, not only hyper's "client error (Connect)".
    assert!(
        error.to_string().to_lowercase().contains("refused"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_accepts_and_never_answers_is_given_up_after_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and holds it, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let settings = BlobSettings {
        url: "s3://warden".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: None,
        ca_certs: Vec::new(),
    };
    let store = BlobStore::open_with_keys(&settings, "k", "s")
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(1));
    let error = store.get(&sha(b"x"), 1).await.unwrap_err();
    assert!(matches!(error, BlobError::TimedOut(..)), "{error}");
    let error = store.put(&sha(b"x"), b"x").await.unwrap_err();
    assert!(matches!(error, BlobError::TimedOut(..)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_https_is_trusted_only_with_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = match S3::start_tls(&cert, &key, &cert) {
        Ok(server) => server,
        Err(reason) => {
            // Skipped or failed as own_s3 decides.
            if own_s3().is_none() {
                return;
            }
            panic!("moto did not start over HTTPS: {reason}");
        }
    };
    assert!(server.endpoint().starts_with("https://"));
    let settings = BlobSettings {
        url: server.url("tls"),
        endpoint: Some(server.endpoint()),
        region: None,
        ca_certs: vec![cert.clone()],
    };
    let store = BlobStore::open_with_keys(&settings, S3::KEY_ID, S3::SECRET).unwrap();
    let name = sha(b"over tls");
    assert_eq!(
        store.put(&name, b"over tls").await.unwrap(),
        Stored::Created
    );
    assert_eq!(
        store.get(&name, 8).await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );

    // Without the CA, the certificate is not trusted: nothing is read or written.
    let untrusting = BlobSettings {
        ca_certs: Vec::new(),
        ..settings.clone()
    };
    let store = BlobStore::open_with_keys(&untrusting, S3::KEY_ID, S3::SECRET).unwrap();
    let error = store.get(&name, 8).await.unwrap_err();
    assert!(matches!(error, BlobError::Store { .. }), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");

    // A CA file that is not one refuses to open the store, saying which file.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let broken = BlobSettings {
        ca_certs: vec![garbage],
        ..settings
    };
    let error = BlobStore::open_with_keys(&broken, S3::KEY_ID, S3::SECRET).unwrap_err();
    assert!(error.to_string().contains("garbage.pem"), "{error}");
}
