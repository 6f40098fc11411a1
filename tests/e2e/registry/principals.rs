//! Principals, keys and quotas, attacked from outside: keys registered without their secret,
//! stolen tokens, back-dated revocations, token floods, guessing at user names, and names one
//! typo away from another publisher's (docs/threat-model-principals.md).

use super::*;
use std::time::Duration;
use warden_registry::protocol::{LogEntry, sign_possession, sign_revocation};
use warden_registry::server::limits::{DEFAULT_QUOTAS, Quotas, Rate};

/// A registry held to `quotas`, served by the harness's serve loop (which passes each
/// connection's peer address to the router).
fn start_with(quotas: Quotas) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let (store, bootstrap) = Store::open(dir.path(), 3600).unwrap();
    Registry::serve(
        dir,
        store.with_quotas(quotas),
        bootstrap.unwrap(),
        "127.0.0.1:0",
        server::DEFAULT_MAX_DOWNLOADS,
    )
}

fn log_of(registry: &Registry) -> Vec<LogEntry> {
    block_on(registry.client(&registry.owner).get_json("v1/log")).unwrap()
}

/// Issues a token with `token` (for its own user unless `user` is given).
fn issue(
    registry: &Registry,
    token: &str,
    user: Option<&str>,
    ttl: Option<u64>,
) -> Result<Json, ClientError> {
    registry.post(
        token,
        "v1/tokens",
        json!({ "user": user, "kind": "pat", "ttl": ttl }),
    )
}

fn error_of(result: Result<Json, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Status { status, message }) => (status.as_u16(), message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// One HTTP/1.1 request over TLS from the loopback address `source` (127.0.0.1, 127.0.0.2,
/// ...): the response's status and head.
fn raw_request(registry: &Registry, source: &str, request: &str) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tls = connect_from(registry, source).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        read_answer(&mut tls).await
    })
}

/// The status and (lowercased) head of the answer on `tls`, read until the server closes
/// (requests say `Connection: close`) or for 10 s at most.
async fn read_answer(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> (u16, String) {
    read_answer_within(tls, Duration::from_secs(10)).await
}

/// Like `read_answer`, waiting at most `wait`.
async fn read_answer_within(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    wait: Duration,
) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    // A missing close_notify is not these tests' concern.
    let _ = tokio::time::timeout(wait, tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase())
}

/// A TLS connection to the registry from the loopback address `source`.
async fn connect_from(
    registry: &Registry,
    source: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = socket
        .connect(registry.address().parse().unwrap())
        .await
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(registry.ca.clone()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

fn get_index_request(registry: &Registry, token: &str) -> String {
    format!(
        "GET /v1/index HTTP/1.1\r\nhost: {}\r\nauthorization: PAT {token}\r\nconnection: close\r\n\r\n",
        registry.address()
    )
}

#[test]
fn a_key_is_registered_only_with_its_own_signature_for_this_registry_and_publisher() {
    let registry = Registry::start(3600);
    let other = Registry::start(3600);
    // Alice is `acme` on the other registry; here `acme` is someone else's (a squatter), and
    // mallory is `evil`.
    let alice = other.publisher("alice", "acme");
    let alice_key = package::public_key_hex(&alice.key);
    let squatter = registry.user("sam", &["publisher"], Some("acme"));
    let mallory = registry.user("mallory", &["publisher"], Some("evil"));
    let mallorys_key = package::generate_key().unwrap();
    // Alice's proof is public: it is in the other registry's log.
    let logged_proof = log_of(&other)
        .into_iter()
        .find_map(|entry| match entry.event {
            warden_registry::protocol::Event::KeyAdded { possession, .. } => Some(possession),
            _ => None,
        })
        .unwrap();
    let id = registry.id();
    assert_ne!(id, other.id());
    let attempts = [
        (&mallory, "evil", None),
        (&mallory, "evil", Some(String::new())),
        (
            &mallory,
            "evil",
            Some(sign_possession(&id, "evil", &mallorys_key)),
        ),
        (&mallory, "evil", Some(logged_proof.clone())),
        // Replayed at another registry under the same publisher name.
        (&squatter, "acme", Some(logged_proof.clone())),
    ];
    for (token, publisher, possession) in attempts {
        let mut body = json!({ "public_key": alice_key });
        if let Some(possession) = &possession {
            body["possession"] = json!(possession);
        }
        let (code, message) =
            error_of(registry.post(token, &format!("v1/publishers/{publisher}/keys"), body));
        assert_eq!(code, 403, "{publisher} {possession:?}: {message}");
        assert!(message.contains("possession"), "{message}");
    }
    // An admin's registration needs the proof too.
    assert_eq!(
        status(registry.post(
            &registry.owner,
            "v1/publishers/evil/keys",
            json!({ "public_key": alice_key })
        )),
        403
    );
    // Nobody locked alice out of her key here: it is not registered, and with her own proof it
    // would be.
    let index: Index = Index::verify(
        &registry.index(&registry.owner),
        &package::verifying_key_from_hex(&registry.public_key).unwrap(),
        now(),
    )
    .unwrap();
    assert!(index.key(&alice_key).is_none());
    let alice_here = registry.user("alice", &["publisher"], Some("acme-two"));
    registry
        .add_key(&alice_here, "acme-two", &alice.key, None)
        .unwrap();
}

#[test]
fn hosts_verify_possession_in_the_log_across_a_registry_key_rotation() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let next = package::generate_key().unwrap();
    registry
        .add_key(&acme.token, "acme", &next, Some(&acme.key))
        .unwrap();
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let host = host();
    install(&registry, &host, &acme.token, "text-transform").unwrap();
    let id = registry.id();
    // The registry's signing key changes; its identity (root version 1's key) does not, so the
    // proofs in its log still verify, for the registry and for the host.
    let registry = registry.restart(|dir| {
        let mut store = Store::open_existing(dir, 3600).unwrap();
        store.rotate_key(dir).unwrap();
        store.check().unwrap();
    });
    assert_eq!(registry.id(), id);
    assert_ne!(registry.public_key, id);
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.1.0"))
        .unwrap();
    let client = registry.client(&acme.token);
    assert!(
        block_on(install::sync(&client, &host.state, now()))
            .unwrap()
            .is_empty()
    );
    // The host pinned the first key; it follows the rotation through the roots.
    let installed = block_on(install::install(
        &client,
        &host.state,
        asking("text-transform", None),
    ))
    .unwrap();
    assert_eq!(installed.version, "1.1.0");
}

#[test]
fn a_stolen_token_does_bounded_harm() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let host = host();
    install(&registry, &host, &acme.token, "text-transform").unwrap();

    // The thief mints a child of the stolen token, and a grandchild of that.
    let child = issue(&registry, &acme.token, None, Some(30 * 86_400)).unwrap();
    let child_token = child["token"].as_str().unwrap().to_string();
    let grandchild = issue(&registry, &child_token, None, None).unwrap();
    let grandchild_token = grandchild["token"].as_str().unwrap().to_string();
    // A child never outlives its issuer.
    assert!(
        grandchild["record"]["expires_at"].as_u64().unwrap()
            <= child["record"]["expires_at"].as_u64().unwrap()
    );
    registry.index(&grandchild_token);

    // The thief cannot back-date a revocation of acme's only key: that would void everything
    // it ever signed.
    let old = package::public_key_hex(&acme.key);
    let revoke = format!("v1/publishers/acme/keys/{old}/revoke");
    let (code, message) =
        error_of(registry.post(&grandchild_token, &revoke, json!({ "revoked_at": 0 })));
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("another current key"), "{message}");
    // Nor with a signature by the key itself, or by a key that is not acme's.
    let stranger = package::generate_key().unwrap();
    for signer in [&acme.key, &stranger] {
        let signature = sign_revocation(&registry.id(), "acme", &old, 0, signer);
        assert_eq!(
            status(registry.post(
                &grandchild_token,
                &revoke,
                json!({ "revoked_at": 0, "signed_by": package::public_key_hex(signer), "signature": signature }),
            )),
            403
        );
    }
    // What the token alone can do is revoke the key from now on, which leaves everything
    // published before valid for hosts.
    std::thread::sleep(Duration::from_millis(1_100));
    registry
        .post(&grandchild_token, &revoke, json!({}))
        .unwrap();
    assert!(
        block_on(install::sync(
            &registry.client(&acme.token),
            &host.state,
            now()
        ))
        .unwrap()
        .is_empty()
    );
    assert!(host.state.load("text-transform").is_ok());

    // Alice revokes the stolen token: what it issued dies with it, at once.
    let stolen_id = {
        let trail: Json = block_on(registry.client(&registry.owner).get_json("v1/audit")).unwrap();
        let child_id = child["record"]["id"].as_str().unwrap();
        assert!(trail.to_string().contains(child_id));
        // The stolen token is alice's PAT; its id is the child's parent.
        child["record"]["parent"].as_str().unwrap().to_string()
    };
    registry
        .post(
            &registry.owner,
            &format!("v1/tokens/{stolen_id}/revoke"),
            json!({}),
        )
        .unwrap();
    for token in [&acme.token, &child_token, &grandchild_token] {
        let answer = block_on(registry.client(token).get_json::<Json>("v1/index"));
        assert!(
            matches!(answer, Err(ClientError::Status { status, .. }) if status == 401),
            "{answer:?}"
        );
    }
    // The admin's back-dating is accepted, and the log marks it as the admin's.
    let second = registry.publisher("bob", "ajax");
    let key = package::public_key_hex(&second.key);
    registry
        .post(
            &registry.owner,
            &format!("v1/publishers/ajax/keys/{key}/revoke"),
            json!({ "revoked_at": 0 }),
        )
        .unwrap();
    let marked = log_of(&registry).into_iter().any(|entry| {
        matches!(entry.event, warden_registry::protocol::Event::KeyRevoked { public_key, by_admin: true, revoked_at: 0, .. } if public_key == key)
    });
    assert!(marked);
}

#[test]
fn a_back_dated_revocation_signed_by_another_key_is_accepted_through_the_cli() {
    let registry = Registry::start(3600);
    let alice = registry.user("alice", &["publisher"], Some("acme"));
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("token"), format!("{alice}\n")).unwrap();
    let ca = registry.cert_path().to_string_lossy().into_owned();
    let warden = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .args(["--ca-cert", &ca, "--token-file", &path("token")])
            .env("WARDEN_REGISTRY", &registry.url)
            .env_remove("WARDEN_TOKEN")
            .output()
            .unwrap()
    };
    let ok = |output: Output| {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    for name in ["first", "second", "other"] {
        ok(Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["keygen", "--out", &path(name)])
            .output()
            .unwrap());
    }
    // The first key, its possession proved from first.key next to first.pub.
    ok(warden(&["registry", "key", "acme", &path("first.pub")]));
    // A secret key that is not the public key's is refused before anything is sent.
    let mismatched = warden(&[
        "registry",
        "key",
        "acme",
        &path("second.pub"),
        "--secret-key",
        &path("other.key"),
        "--signed-by",
        &path("first.key"),
    ]);
    assert_eq!(mismatched.status.code(), Some(2));
    ok(warden(&[
        "registry",
        "key",
        "acme",
        &path("second.pub"),
        "--signed-by",
        &path("first.key"),
    ]));
    // Back-dating without another key's signature is refused; with it, accepted.
    let unsigned = warden(&[
        "registry",
        "key",
        "acme",
        &path("first.pub"),
        "--revoke",
        "--revoked-at",
        "0",
    ]);
    assert_eq!(unsigned.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unsigned.stderr).contains("another current key"));
    ok(warden(&[
        "registry",
        "key",
        "acme",
        &path("first.pub"),
        "--revoke",
        "--revoked-at",
        "0",
        "--signed-by",
        &path("second.key"),
    ]));
    let first = std::fs::read_to_string(path("first.pub")).unwrap();
    let revoked = log_of(&registry).into_iter().any(|entry| {
        matches!(entry.event, warden_registry::protocol::Event::KeyRevoked { public_key, signed_by: Some(_), revoked_at: 0, by_admin: false, .. } if public_key == first.trim())
    });
    assert!(revoked);
}

#[test]
fn tokens_per_user_are_capped_and_dead_ones_do_not_pile_up() {
    let registry = start_with(Quotas {
        tokens_per_user: 3,
        token_issuing: Rate::new(10_000, Duration::from_millis(1)),
        ..DEFAULT_QUOTAS
    });
    // Rita holds one token; she mints two more, then hits the cap.
    let rita = registry.user("rita", &["reader"], None);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let issued = issue(&registry, &rita, None, None).unwrap();
        ids.push(issued["record"]["id"].as_str().unwrap().to_string());
    }
    let (code, message) = error_of(issue(&registry, &rita, None, None));
    assert_eq!(code, 409, "{message}");
    assert!(message.contains("revoke one"), "{message}");
    // Mint and revoke two hundred times: the table does not grow.
    for _ in 0..200 {
        let id = ids.pop().unwrap();
        registry
            .post(&rita, &format!("v1/tokens/{id}/revoke"), json!({}))
            .unwrap();
        let issued = issue(&registry, &rita, None, Some(3600)).unwrap();
        ids.push(issued["record"]["id"].as_str().unwrap().to_string());
    }
    // An expired token frees its place.
    let id = ids.pop().unwrap();
    registry
        .post(&rita, &format!("v1/tokens/{id}/revoke"), json!({}))
        .unwrap();
    issue(&registry, &rita, None, Some(1)).unwrap();
    std::thread::sleep(Duration::from_millis(2_100));
    issue(&registry, &rita, None, None).unwrap();
    let registry = registry.restart(|dir| {
        let db = redb::Database::create(dir.join("registry.redb")).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("tokens");
        let held = redb::ReadableTableMetadata::len(&txn.open_table(table).unwrap()).unwrap();
        // The owner's, and rita's three.
        assert_eq!(held, 4);
    });
    registry.index(&rita);
}

#[test]
fn issuing_and_publishing_are_rate_limited_per_user_with_retry_after() {
    let registry = start_with(Quotas {
        token_issuing: Rate::new(3, Duration::from_secs(3600)),
        publishing: Rate::new(2, Duration::from_secs(3600)),
        ..DEFAULT_QUOTAS
    });
    let acme = registry.publisher("alice", "acme");
    for _ in 0..2 {
        issue(&registry, &acme.token, None, None).unwrap();
    }
    // The owner's issuing for alice counted against the owner; alice's own budget is 3.
    issue(&registry, &acme.token, None, None).unwrap();
    let body = r#"{"kind":"pat"}"#;
    let request = format!(
        "POST /v1/tokens HTTP/1.1\r\nhost: {}\r\nauthorization: PAT {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        registry.address(),
        acme.token,
        body.len()
    );
    let (code, head) = raw_request(&registry, "127.0.0.1", &request);
    assert_eq!(code, 429, "{head}");
    let retry: u64 = head
        .lines()
        .find_map(|line| line.strip_prefix("retry-after: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    // Another user is not held back by alice's budget.
    issue(&registry, &registry.owner, None, None).unwrap();

    for version in ["1.0.0", "1.0.1"] {
        registry
            .publish(&acme.token, acme.pack(&plain(), "text-transform", version))
            .unwrap();
    }
    assert_eq!(
        status(registry.publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.2"))),
        429
    );
}

#[test]
fn failed_authentications_are_limited_per_source_address() {
    let registry = start_with(Quotas {
        failed_authentications: Rate::new(5, Duration::from_secs(3600)),
        ..DEFAULT_QUOTAS
    });
    let reader = registry.user("rita", &["reader"], None);
    let guess = format!("wdn_pat_{}", "0".repeat(64));
    for _ in 0..5 {
        let (code, _) = raw_request(
            &registry,
            "127.0.0.2",
            &get_index_request(&registry, &guess),
        );
        assert_eq!(code, 401);
    }
    // The guessing address is refused outright now, even with a valid token...
    let (code, head) = raw_request(
        &registry,
        "127.0.0.2",
        &get_index_request(&registry, &reader),
    );
    assert_eq!(code, 429, "{head}");
    assert!(head.contains("retry-after: "), "{head}");
    // ...while other addresses are not.
    let (code, _) = raw_request(
        &registry,
        "127.0.0.3",
        &get_index_request(&registry, &reader),
    );
    assert_eq!(code, 200);
    registry.index(&reader);
}

#[test]
fn a_publishers_history_has_a_quota() {
    let registry = start_with(Quotas {
        versions_per_publisher: 2,
        key_events_per_publisher: 2,
        ..DEFAULT_QUOTAS
    });
    let acme = registry.publisher("alice", "acme");
    for version in ["1.0.0", "1.0.1"] {
        registry
            .publish(&acme.token, acme.pack(&plain(), "text-transform", version))
            .unwrap();
    }
    // Yanking does not give a version back: the log keeps it.
    registry
        .post(
            &acme.token,
            "v1/packages/text-transform/1.0.1/yank",
            json!({}),
        )
        .unwrap();
    let (code, message) =
        error_of(registry.publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.2")));
    assert_eq!(code, 409, "{message}");
    assert!(
        message.contains("--max-versions-per-publisher"),
        "{message}"
    );
    // Two key events: the first key and one rotation; a third key is refused.
    let next = package::generate_key().unwrap();
    registry
        .add_key(&acme.token, "acme", &next, Some(&acme.key))
        .unwrap();
    let third = package::generate_key().unwrap();
    let (code, message) = error_of(registry.add_key(&acme.token, "acme", &third, Some(&next)));
    assert_eq!(code, 409, "{message}");
    assert!(
        message.contains("--max-key-events-per-publisher"),
        "{message}"
    );
    // Revoking is never refused: a publisher at its quota must still be able to revoke a
    // stolen key (and a key is revoked once, so additions bound revocations).
    let old = package::public_key_hex(&acme.key);
    registry
        .post(
            &acme.token,
            &format!("v1/publishers/acme/keys/{old}/revoke"),
            json!({}),
        )
        .unwrap();
    // An admin is not held to it (recovering a locked-out publisher must stay possible).
    registry
        .add_key(&registry.owner, "acme", &third, Some(&next))
        .unwrap();
    // Another publisher has its own history.
    let ajax = registry.publisher("bob", "ajax");
    registry
        .publish(&ajax.token, ajax.pack(&plain(), "widget", "1.0.0"))
        .unwrap();
}

#[test]
fn answers_do_not_tell_which_users_or_tokens_exist() {
    let registry = Registry::start(3600);
    let rita = registry.user("rita", &["reader"], None);
    let admin = registry.user("ada", &["admin"], None);
    let owners_token = issue(&registry, &registry.owner, None, None).unwrap();
    let owners_id = owners_token["record"]["id"].as_str().unwrap();
    // A reader, and an admin, asking for an existing user's token and for a user that does
    // not exist: the same status, and the same message but for the name.
    for caller in [&rita, &admin] {
        let (existing, about_owner) = error_of(issue(&registry, caller, Some("owner"), None));
        let (missing, about_nobody) = error_of(issue(&registry, caller, Some("nobody"), None));
        assert_eq!((existing, missing), (403, 403));
        assert_eq!(
            about_owner.replace("owner", "X"),
            about_nobody.replace("nobody", "X")
        );
        // Revoking another's token and a token that does not exist.
        let (existing, about_real) =
            error_of(registry.post(caller, &format!("v1/tokens/{owners_id}/revoke"), json!({})));
        let (missing, about_made_up) =
            error_of(registry.post(caller, "v1/tokens/0123456789abcdef/revoke", json!({})));
        assert_eq!((existing, missing), (403, 403));
        assert_eq!(
            about_real.replace(owners_id, "X"),
            about_made_up.replace("0123456789abcdef", "X")
        );
    }
}

#[test]
fn names_one_typo_from_another_publishers_are_refused() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let evil = registry.publisher("mallory", "evil");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    registry
        .publish(&acme.token, acme.pack(&plain(), "json", "1.0.0"))
        .unwrap();
    for typo in [
        "text-transfrom",  // neighbours swapped
        "text-transforms", // a letter added
        "text-transfom",   // a letter dropped
        "text-transfarm",  // a letter replaced
        "tetx-transform",
        "jsno", // short names: swaps only
    ] {
        let (code, message) =
            error_of(registry.publish(&evil.token, evil.pack(&plain(), typo, "1.0.0")));
        assert_eq!(code, 409, "{typo}: {message}");
        assert!(message.contains("one typo away"), "{message}");
    }
    // The owner of a name may take its neighbours; others take clearly different names, and a
    // short name one edit away is not refused (most short names are one edit from another).
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transforms", "1.0.0"))
        .unwrap();
    for name in ["text-transformer", "jsan"] {
        registry
            .publish(&evil.token, evil.pack(&plain(), name, "1.0.0"))
            .unwrap();
    }
}

// Attacks on the protections above (review): each of these failed before its fix.

/// The `Retry-After` of a (lowercased) answer head.
fn retry_after(head: &str) -> u64 {
    head.lines()
        .find_map(|line| line.strip_prefix("retry-after: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no retry-after in {head}"))
}

#[test]
fn failed_authentications_in_flight_together_are_all_counted() {
    let registry = start_with(Quotas {
        failed_authentications: Rate::new(3, Duration::from_secs(3600)),
        ..DEFAULT_QUOTAS
    });
    let guess = get_index_request(&registry, &format!("wdn_pat_{}", "1".repeat(64)));
    const GUESSES: usize = 48;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let codes: Vec<u16> = runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        // Connect first, then send every guess at once, so that they are in flight together
        // (as many HTTP/2 streams or connections would be).
        let mut connections = Vec::new();
        for _ in 0..GUESSES {
            connections.push(connect_from(&registry, "127.0.0.4").await);
        }
        let sent: Vec<_> = connections
            .into_iter()
            .map(|mut tls| {
                let guess = guess.clone();
                tokio::spawn(async move {
                    tls.write_all(guess.as_bytes()).await.unwrap();
                    read_answer(&mut tls).await.0
                })
            })
            .collect();
        let mut codes = Vec::new();
        for answer in sent {
            codes.push(answer.await.unwrap());
        }
        codes
    });
    let failed = codes.iter().filter(|code| **code == 401).count() as u64;
    let limited = codes.iter().filter(|code| **code == 429).count() as u64;
    assert_eq!(failed + limited, GUESSES as u64, "{codes:?}");
    assert!(failed >= 3, "{codes:?}");
    // Every failure beyond the three allowed is paid for with an hour of waiting, however
    // many got through together.
    let (code, head) = raw_request(&registry, "127.0.0.4", &guess);
    assert_eq!(code, 429, "{head}");
    let wait = retry_after(&head);
    assert!(
        wait >= (failed - 3) * 3600,
        "{failed} failures got through, yet the address may retry in {wait} s"
    );
}

#[test]
fn uploads_past_the_publish_rate_are_refused_before_they_are_read() {
    // Two uploads in flight are within alice's share of the upload slots: what refuses the
    // second is the publish rate.
    let dir = tempfile::tempdir().unwrap();
    let (store, bootstrap) = Store::open(dir.path(), 3600).unwrap();
    let limits = server::ApiLimits {
        max_uploads_per_user: 2,
        ..server::ApiLimits::new(dir.path())
    };
    let store = store.with_quotas(Quotas {
        publishing: Rate::new(1, Duration::from_secs(3600)),
        ..DEFAULT_QUOTAS
    });
    let registry = Registry::serve_with(dir, store, bootstrap.unwrap(), "127.0.0.1:0", limits);
    let acme = registry.publisher("alice", "acme");
    let upload = format!(
        "POST /v1/packages HTTP/1.1\r\nhost: {}\r\nauthorization: PAT {}\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000000\r\nconnection: close\r\n\r\npartial",
        registry.address(),
        acme.token
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        // Two uploads start and stall (a slow or malicious client): the registry must not
        // wait for both bodies when the caller's rate allows one publish.
        let mut stalled = Vec::new();
        for _ in 0..2 {
            let mut tls = connect_from(&registry, "127.0.0.1").await;
            tls.write_all(upload.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            stalled.push(tls);
        }
        let answers: Vec<_> = stalled
            .into_iter()
            // The refusal comes at once; the stalled one would get 408 once its body falls
            // below the minimum rate (10 s), so wait well short of that.
            .map(|mut tls| {
                tokio::spawn(async move {
                    let answer = read_answer_within(&mut tls, Duration::from_secs(4)).await;
                    (answer, tls)
                })
            })
            .collect();
        // One answer comes at once (429); the other upload is still waiting for its body. Keep
        // its connection until the end.
        let mut codes = Vec::new();
        let mut open = Vec::new();
        for answer in answers {
            let ((code, head), tls) = answer.await.unwrap();
            if code != 0 {
                assert_eq!(code, 429, "{head}");
                assert!(head.contains("retry-after: "), "{head}");
            }
            codes.push(code);
            open.push(tls);
        }
        codes.sort();
        assert_eq!(codes, [0, 429], "one refused at once, one still reading");
    });
}

#[test]
fn a_revocation_from_now_voids_nothing_already_published() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let published = registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let published_at = published["published_at"].as_u64().unwrap();
    let key = package::public_key_hex(&acme.key);
    let revoke = format!("v1/publishers/acme/keys/{key}/revoke");
    // A thief with the token names the second of the last publish: that voids it, so it is
    // back-dating and needs another key's signature.
    let (code, message) =
        error_of(registry.post(&acme.token, &revoke, json!({ "revoked_at": published_at })));
    assert_eq!(code, 403, "{message}");
    // Revoking from now, in the same second as the publish, leaves the version valid.
    let revoked = registry.post(&acme.token, &revoke, json!({})).unwrap();
    assert!(
        revoked["revoked_at"].as_u64().unwrap() > published_at,
        "{revoked} after a publish at {published_at}"
    );
    let host = host();
    install(&registry, &host, &acme.token, "text-transform").unwrap();
}

#[test]
fn a_huge_revoked_at_or_ttl_is_refused_or_clamped_without_harm() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let key = package::public_key_hex(&acme.key);
    let revoke = format!("v1/publishers/acme/keys/{key}/revoke");
    // Beyond u64 and negative: refused as malformed, nothing changes.
    for body in [
        r#"{"revoked_at": 18446744073709551616}"#,
        r#"{"revoked_at": -1}"#,
    ] {
        let body: Json = serde_json::from_str(body).unwrap();
        let code = status(registry.post(&acme.token, &revoke, body));
        assert!((400..500).contains(&code), "{code}");
    }
    for ttl in [0, u64::MAX] {
        assert_eq!(status(issue(&registry, &acme.token, None, Some(ttl))), 400);
    }
    // u64::MAX is the future: revoked from now, not later.
    let revoked = registry
        .post(&acme.token, &revoke, json!({ "revoked_at": u64::MAX }))
        .unwrap();
    assert!(
        revoked["revoked_at"].as_u64().unwrap() <= now() + 2,
        "{revoked}"
    );
}
