//! The registry end to end, over real TLS on loopback: publishing, installing and running, and
//! every refusal the registry and the host owe (docs/threat-model.md lists what each defends).

mod approval_flags;
mod cluster_install;
mod daemon_revocation;
mod dos;
mod host_attacks;
mod host_log;
mod host_pinning;
mod principals;

use crate::support::*;
use ed25519_dalek::SigningKey;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use warden::build::Target;
use warden_package::{self as package, Manifest};
use warden_registry::client::install::{
    self, InstallError, InstallRequest, InstallState, Installed, Refusal,
};
use warden_registry::client::{Client, ClientError, Credential};
use warden_registry::protocol::{Index, ProtocolError, Signed, now};
use warden_registry::server::store::Store;
use warden_registry::server::{self, tls};

/// A registry serving on a loopback port from a temporary directory, on its own runtime.
struct Registry {
    dir: tempfile::TempDir,
    url: String,
    owner: String,
    ca: Vec<u8>,
    public_key: String,
    _runtime: tokio::runtime::Runtime,
}

impl Registry {
    fn start(index_ttl: u64) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let (store, bootstrap) = Store::open(dir.path(), index_ttl).unwrap();
        let owner = bootstrap.expect("a new registry issues an owner token");
        Registry::serve(
            dir,
            store,
            owner,
            "127.0.0.1:0",
            server::DEFAULT_MAX_DOWNLOADS,
        )
    }

    /// A registry that serves at most `downloads` package downloads at once.
    fn start_with_downloads(downloads: usize) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let (store, bootstrap) = Store::open(dir.path(), 3600).unwrap();
        Registry::serve(dir, store, bootstrap.unwrap(), "127.0.0.1:0", downloads)
    }

    /// Stops serving, lets `change` work on the stopped registry's directory, and serves again.
    fn restart(self, change: impl FnOnce(&Path)) -> Registry {
        let Registry {
            dir,
            owner,
            url,
            _runtime,
            ..
        } = self;
        _runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        change(dir.path());
        let (store, _) = Store::open(dir.path(), 3600).unwrap();
        // The same address: hosts know a registry by its URL.
        Registry::serve(
            dir,
            store,
            owner,
            url.trim_start_matches("https://"),
            server::DEFAULT_MAX_DOWNLOADS,
        )
    }

    fn serve(
        dir: tempfile::TempDir,
        store: Store,
        owner: String,
        address: &str,
        downloads: usize,
    ) -> Registry {
        let limits = server::ApiLimits {
            max_downloads: downloads,
            ..server::ApiLimits::new(dir.path())
        };
        Registry::serve_with(dir, store, owner, address, limits)
    }

    /// Serves `store` under the API limits given.
    fn serve_with(
        dir: tempfile::TempDir,
        store: Store,
        owner: String,
        address: &str,
        limits: server::ApiLimits,
    ) -> Registry {
        let public_key = store.public_key();
        let tls = tls::server_config(dir.path(), None, None).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(address))
            .unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let router = server::api(Arc::new(store), limits);
        runtime.spawn(server::serve(listener, tls, router));
        let pem = std::fs::read(tls::dev_certificate_path(dir.path())).unwrap();
        let ca = warden_host::tls::certificates_from_pem_or_der(&pem).unwrap()[0].clone();
        Registry {
            owner,
            dir,
            url,
            ca,
            public_key,
            _runtime: runtime,
        }
    }

    fn client(&self, token: &str) -> Client {
        Client::new(
            &self.url,
            std::slice::from_ref(&self.ca),
            Some(Credential::from_token(token)),
        )
        .unwrap()
    }

    fn post(&self, token: &str, path: &str, body: Json) -> Result<Json, ClientError> {
        block_on(self.client(token).post_json(path, &body))
    }

    /// Creates a user with `roles` acting for `publisher` and returns its PAT.
    fn user(&self, name: &str, roles: &[&str], publisher: Option<&str>) -> String {
        self.post(
            &self.owner,
            "v1/users",
            json!({ "name": name, "roles": roles, "publisher": publisher }),
        )
        .unwrap();
        self.token(name, "pat", None)
    }

    fn token(&self, user: &str, kind: &str, ttl: Option<u64>) -> String {
        let issued = self
            .post(
                &self.owner,
                "v1/tokens",
                json!({ "user": user, "kind": kind, "ttl": ttl }),
            )
            .unwrap();
        issued["token"].as_str().unwrap().to_string()
    }

    /// A publisher user with a registered key.
    fn publisher(&self, user: &str, publisher: &str) -> Publisher {
        let token = self.user(user, &["publisher"], Some(publisher));
        let key = package::generate_key().unwrap();
        self.add_key(&token, publisher, &key, None).unwrap();
        Publisher {
            name: publisher.to_string(),
            token,
            key,
        }
    }

    /// Revokes `publisher`'s first key back to when it was added, signed by `by` (another
    /// current key of the publisher).
    fn revoke_from_the_start(
        &self,
        publisher: &Publisher,
        by: &SigningKey,
    ) -> Result<Json, ClientError> {
        let old = package::public_key_hex(&publisher.key);
        let signature =
            warden_registry::protocol::sign_revocation(&self.id(), &publisher.name, &old, 0, by);
        self.post(
            &publisher.token,
            &format!("v1/publishers/{}/keys/{old}/revoke", publisher.name),
            json!({ "revoked_at": 0, "signed_by": package::public_key_hex(by), "signature": signature }),
        )
    }

    /// The registry's identity, which key possession and revocation statements name.
    fn id(&self) -> String {
        warden_registry::protocol::registry_id(&self.roots()).unwrap()
    }

    /// Registers `key` for `publisher` with its proof of possession, signed in by `by`.
    fn add_key(
        &self,
        token: &str,
        publisher: &str,
        key: &SigningKey,
        by: Option<&SigningKey>,
    ) -> Result<Json, ClientError> {
        use warden_registry::protocol::{sign_key_statement, sign_possession};
        let public_key = package::public_key_hex(key);
        let mut body = json!({
            "public_key": public_key,
            "possession": sign_possession(&self.id(), publisher, key),
        });
        if let Some(by) = by {
            body["signed_by"] = json!(package::public_key_hex(by));
            body["signature"] = json!(sign_key_statement(publisher, &public_key, by));
        }
        self.post(token, &format!("v1/publishers/{publisher}/keys"), body)
    }

    fn publish(&self, token: &str, bytes: Vec<u8>) -> Result<Json, ClientError> {
        let client = self.client(token);
        block_on(client.send(
            hyper::Method::POST,
            "v1/packages",
            Some(("application/octet-stream", bytes)),
            1 << 20,
        ))
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
    }

    fn index(&self, token: &str) -> Signed {
        block_on(self.client(token).get_json("v1/index")).unwrap()
    }

    fn roots(&self) -> Vec<warden_registry::protocol::SignedRoot> {
        block_on(self.client(&self.owner).get_json("v1/roots")).unwrap()
    }

    /// Its loopback address, as `IP:PORT`.
    fn address(&self) -> String {
        self.url.trim_start_matches("https://").to_string()
    }

    fn cert_path(&self) -> PathBuf {
        tls::dev_certificate_path(self.dir.path())
    }
}

struct Publisher {
    name: String,
    token: String,
    key: SigningKey,
}

impl Publisher {
    fn pack(&self, component: &Path, name: &str, version: &str) -> Vec<u8> {
        pack_with(component, name, version, &self.name, &[], &self.key)
    }
}

fn pack_with(
    component: &Path,
    name: &str,
    version: &str,
    publisher: &str,
    hosts: &[&str],
    key: &SigningKey,
) -> Vec<u8> {
    let manifest = Manifest {
        name: name.into(),
        version: version.into(),
        description: String::new(),
        publisher: publisher.into(),
        capabilities: vec![],
        allowed_hosts: hosts.iter().map(|host| host.to_string()).collect(),
        limits: "default".into(),
        wit: String::new(),
        component_sha256: String::new(),
        component_bytes: 0,
    };
    package::pack(&std::fs::read(component).unwrap(), manifest, key).unwrap()
}

fn plain() -> PathBuf {
    example("text-transform", Target::Unknown)
}

fn with_storage() -> PathBuf {
    example("counter", Target::Unknown)
}

fn status(result: Result<Json, ClientError>) -> u16 {
    match result {
        Err(ClientError::Status { status, .. }) => status.as_u16(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

struct Host {
    _dir: tempfile::TempDir,
    state: InstallState,
}

fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    Host {
        state: InstallState::open(dir.path()).unwrap(),
        _dir: dir,
    }
}

/// An install of the newest version of `name`, approving what it requests, checked now.
fn asking<'a>(name: &'a str, registry_key: Option<&'a str>) -> InstallRequest<'a> {
    InstallRequest {
        name,
        registry_key,
        now: now(),
        ..InstallRequest::default()
    }
}

/// The request to install `node` (`NAME` or `NAME@VERSION`) from `registry`, checked at `at`,
/// approving what the package requests.
fn request_for<'a>(registry: &'a Registry, node: &'a str, at: u64) -> InstallRequest<'a> {
    let (name, version) = match node.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (node, None),
    };
    InstallRequest {
        name,
        version,
        registry_key: Some(&registry.public_key),
        now: at,
        ..InstallRequest::default()
    }
}

fn install_at(
    registry: &Registry,
    host: &Host,
    token: &str,
    node: &str,
    at: u64,
) -> Result<Installed, InstallError> {
    block_on(install::install(
        &registry.client(token),
        &host.state,
        request_for(registry, node, at),
    ))
}

fn install(
    registry: &Registry,
    host: &Host,
    token: &str,
    node: &str,
) -> Result<Installed, InstallError> {
    install_at(registry, host, token, node, now())
}

/// Asserts that `result` is a refusal that `expected` accepts.
fn refused(result: Result<Installed, InstallError>, expected: impl Fn(&Refusal) -> bool) {
    match result {
        Err(InstallError::Refused(refusal)) => assert!(expected(&refusal), "{refusal:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn keygen_pack_publish_install_and_run_through_the_cli() {
    let registry = Registry::start(3600);
    let alice = registry.user("alice", &["publisher"], Some("acme"));
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).to_string_lossy().into_owned();
    let warden = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .env("WARDEN_REGISTRY", &registry.url)
            .env("WARDEN_TOKEN", &alice)
            .env("WARDEN_STATE", path("host"))
            .output()
            .unwrap()
    };
    let ok = |output: Output| -> String {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let ca = registry.cert_path().to_string_lossy().into_owned();
    ok(warden(&["keygen", "--out", &path("acme")]));
    ok(warden(&[
        "registry",
        "key",
        "acme",
        &path("acme.pub"),
        "--ca-cert",
        &ca,
    ]));
    let node = plain().to_string_lossy().into_owned();
    let package = path("tt.wpkg");
    ok(warden(&[
        "pack",
        &node,
        "--name",
        "text-transform",
        "--version",
        "1.0.0",
        "--key",
        &path("acme.key"),
        "--publisher",
        "acme",
        "--out",
        &package,
    ]));
    let published = ok(warden(&["publish", &package, "--ca-cert", &ca]));
    assert!(
        published.contains("published text-transform@1.0.0"),
        "{published}"
    );

    // The first install needs the registry's key; without it the host refuses to guess.
    let unpinned = warden(&["install", "text-transform", "--ca-cert", &ca]);
    assert_eq!(unpinned.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unpinned.stderr).contains("--registry-key"));
    let key_file = registry.dir.path().join("registry.pub");
    let installed = ok(warden(&[
        "install",
        "text-transform",
        "--ca-cert",
        &ca,
        "--registry-key",
        key_file.to_str().unwrap(),
    ]));
    assert!(
        installed.contains("installed text-transform@1.0.0"),
        "{installed}"
    );
    let ran = ok(warden(&[
        "run",
        "--installed",
        "text-transform",
        "--node",
        "text-transform",
        "--input",
        "text=Hello",
        "--input",
        "mode=upper",
        "--json",
    ]));
    assert!(ran.contains("HELLO"), "{ran}");

    // Without --ca-cert the development certificate is not trusted: TLS is real.
    let untrusted = warden(&["install", "text-transform"]);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("TLS"));
}

#[test]
fn the_registry_refuses_tampered_packages() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let good = acme.pack(&plain(), "text-transform", "1.0.0");
    let original = package::decode(&good).unwrap();

    // One flipped bit in the component.
    let mut flipped = original.clone();
    let middle = flipped.component.len() / 2;
    flipped.component[middle] ^= 1;
    // A manifest field changed after signing.
    let mut described = original.clone();
    described.manifest.description = "now with more features".into();
    // A capability added after signing.
    let mut escalated = original.clone();
    escalated.manifest.capabilities.push("http-get".into());
    // A signature transplanted from another package by the same key.
    let other = package::decode(&acme.pack(&plain(), "other-node", "1.0.0")).unwrap();
    let mut transplanted = original.clone();
    transplanted.signatures = other.signatures.clone();
    // A statement for another version: 1.0.0's signature on 1.0.1.
    let mut revised = package::decode(&acme.pack(&plain(), "text-transform", "1.0.1")).unwrap();
    revised.signatures = original.signatures.clone();
    // Bytes past the end of the package.
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"unsigned");
    // The same manifest and signature in other bytes (pretty-printed JSON): it would verify
    // against a re-serialized statement, and give one signed package two content addresses.
    let reencoded = {
        let manifest = serde_json::to_vec_pretty(&original.manifest).unwrap();
        let signatures = serde_json::to_vec(&original.signatures).unwrap();
        let mut bytes = package::MAGIC.to_vec();
        bytes.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&manifest);
        bytes.extend_from_slice(&(signatures.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&signatures);
        bytes.extend_from_slice(&(original.component.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&original.component);
        bytes
    };
    assert_ne!(reencoded, good);
    for (what, bytes) in [
        ("flipped bit", package::encode(&flipped)),
        ("changed description", package::encode(&described)),
        ("added capability", package::encode(&escalated)),
        ("transplanted signature", package::encode(&transplanted)),
        ("other version's statement", package::encode(&revised)),
        ("trailing bytes", trailing),
        ("re-encoded manifest", reencoded.clone()),
    ] {
        assert_eq!(status(registry.publish(&acme.token, bytes)), 400, "{what}");
    }
    registry.publish(&acme.token, good).unwrap();
    // Published or not, the re-encoding stays refused, not a second copy of the version.
    let answer = registry.publish(&acme.token, reencoded);
    assert_eq!(status(answer), 400);
}

#[test]
fn names_versions_and_ownership() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let evil = registry.publisher("mallory", "evil");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    // A re-publish of an existing version, even with other bytes.
    assert_eq!(
        status(registry.publish(
            &acme.token,
            acme.pack(&with_storage(), "text-transform", "1.0.0")
        )),
        409
    );
    // A non-owner publishing a new version of an existing name.
    assert_eq!(
        status(registry.publish(&evil.token, evil.pack(&plain(), "text-transform", "2.0.0"))),
        403
    );
    // Lookalike names, by another publisher and by the owner alike.
    for lookalike in [
        "text_transform",
        "text.transform",
        "text-transf0rm",
        "texttransforrn",
    ] {
        assert_eq!(
            status(registry.publish(&evil.token, evil.pack(&plain(), lookalike, "1.0.0"))),
            409,
            "{lookalike}"
        );
    }
    // Publishing as a publisher the caller does not act for.
    let forged = pack_with(&plain(), "fresh", "1.0.0", "acme", &[], &evil.key);
    assert_eq!(status(registry.publish(&evil.token, forged)), 403);
    // A key not registered for the publisher.
    let stranger = package::generate_key().unwrap();
    let unsigned = pack_with(&plain(), "fresh", "1.0.0", "evil", &[], &stranger);
    assert_eq!(status(registry.publish(&evil.token, unsigned)), 403);
    // Yanked versions stay listed but cannot be installed anew.
    registry
        .post(
            &acme.token,
            "v1/packages/text-transform/1.0.0/yank",
            json!({}),
        )
        .unwrap();
    let host = host();
    refused(
        install(&registry, &host, &acme.token, "text-transform@1.0.0"),
        |refusal| matches!(refusal, Refusal::Yanked { version, .. } if version == "1.0.0"),
    );
}

#[test]
fn tokens_and_permissions() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let reader = registry.user("rita", &["reader"], None);
    let package = acme.pack(&plain(), "text-transform", "1.0.0");

    // No token, an unknown token, a token in the wrong header.
    let anonymous = Client::new(&registry.url, std::slice::from_ref(&registry.ca), None).unwrap();
    let answer = block_on(anonymous.get_json::<Json>("v1/index"));
    assert!(matches!(answer, Err(ClientError::Status { status, .. }) if status == 401));
    assert_eq!(
        status(registry.publish(&format!("wdn_pat_{}", "0".repeat(64)), package.clone())),
        401
    );
    let api_key = registry.token("alice", "api-key", None);
    let misplaced = Client::new(
        &registry.url,
        std::slice::from_ref(&registry.ca),
        Some(Credential {
            kind: warden_registry::protocol::TokenKind::Pat,
            token: api_key.clone(),
        }),
    )
    .unwrap();
    assert!(block_on(misplaced.get_json::<Json>("v1/index")).is_err());

    // A token without the needed permission.
    assert_eq!(status(registry.publish(&reader, package.clone())), 403);
    assert_eq!(
        status(registry.post(
            &acme.token,
            "v1/users",
            json!({ "name": "x", "roles": ["reader"] })
        )),
        403
    );
    assert_eq!(
        status(
            block_on(registry.client(&reader).get_json::<Json>("v1/audit"))
                .map(|_: Json| Json::Null)
        ),
        403
    );
    // Nobody hands out a role above their own.
    let admin = registry.user("ada", &["admin"], None);
    assert_eq!(
        status(registry.post(
            &admin,
            "v1/users",
            json!({ "name": "o2", "roles": ["owner"] })
        )),
        403
    );

    // An API key works in X-API-Key.
    registry.publish(&api_key, package).unwrap();

    // Lifetimes outside 1 second to a year are refused.
    for ttl in [0, 400 * 86_400] {
        assert_eq!(
            status(registry.post(
                &registry.owner,
                "v1/tokens",
                json!({ "user": "alice", "kind": "pat", "ttl": ttl })
            )),
            400
        );
    }
    // An expired token (a one-second token, two seconds later).
    let expired = registry.token("alice", "pat", Some(1));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        status(registry.publish(&expired, acme.pack(&plain(), "text-transform", "1.0.1"))),
        401
    );

    // A revoked token stops working at once.
    let issued = registry
        .post(&acme.token, "v1/tokens", json!({ "kind": "pat" }))
        .unwrap();
    let token = issued["token"].as_str().unwrap().to_string();
    let id = issued["record"]["id"].as_str().unwrap().to_string();
    registry
        .publish(&token, acme.pack(&plain(), "text-transform", "1.0.2"))
        .unwrap();
    registry
        .post(&token, &format!("v1/tokens/{id}/revoke"), json!({}))
        .unwrap();
    assert_eq!(
        status(registry.publish(&token, acme.pack(&plain(), "text-transform", "1.0.3"))),
        401
    );

    // The audit trail records who did what, for those allowed to read it.
    let trail: Json = block_on(registry.client(&registry.owner).get_json("v1/audit")).unwrap();
    assert!(trail.to_string().contains(&format!("revoked token {id}")));
}

#[test]
fn keys_rotate_and_revocation_binds_registry_and_hosts() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let next = package::generate_key().unwrap();
    let next_hex = package::public_key_hex(&next);
    let possession = warden_registry::protocol::sign_possession(&registry.id(), "acme", &next);
    // A second key needs the signature of a current one.
    assert_eq!(
        status(registry.post(
            &acme.token,
            "v1/publishers/acme/keys",
            json!({ "public_key": next_hex, "possession": possession })
        )),
        403
    );
    let stranger = package::generate_key().unwrap();
    let forged = warden_registry::protocol::sign_key_statement("acme", &next_hex, &stranger);
    assert_eq!(
        status(registry.post(
            &acme.token,
            "v1/publishers/acme/keys",
            json!({ "public_key": next_hex, "possession": possession, "signed_by": package::public_key_hex(&stranger), "signature": forged }),
        )),
        403
    );
    // Weak keys are refused at registration.
    let identity = format!("01{}", "0".repeat(62));
    assert_eq!(
        status(registry.post(
            &acme.token,
            "v1/publishers/acme/keys",
            json!({ "public_key": identity })
        )),
        400
    );
    registry
        .add_key(&acme.token, "acme", &next, Some(&acme.key))
        .unwrap();

    // Revoke the first key back to when it was added: everything it signed is refused. A
    // back-dated revocation is signed by another current key.
    registry.revoke_from_the_start(&acme, &next).unwrap();
    assert_eq!(
        status(registry.publish(&acme.token, acme.pack(&plain(), "text-transform", "1.1.0"))),
        403
    );
    let host = host();
    refused(
        install(&registry, &host, &acme.token, "text-transform@1.0.0"),
        |refusal| matches!(refusal, Refusal::NoValidSigner { version, .. } if version == "1.0.0"),
    );
    // The rotated-in key still publishes, and hosts accept what it signed.
    let rotated = pack_with(&plain(), "text-transform", "1.2.0", "acme", &[], &next);
    registry.publish(&acme.token, rotated).unwrap();
    install(&registry, &host, &acme.token, "text-transform").unwrap();
}

#[test]
fn hosts_refuse_rollbacks_freezes_and_mixed_snapshots() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let old_index = registry.index(&acme.token);
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.1.0"))
        .unwrap();
    let host = host();
    let installed = install(&registry, &host, &acme.token, "text-transform").unwrap();
    assert_eq!(installed.version, "1.1.0");

    // A node version below the highest installed.
    refused(
        install(&registry, &host, &acme.token, "text-transform@1.0.0"),
        |refusal| matches!(refusal, Refusal::Downgrade { highest, .. } if highest.to_string() == "1.1.0"),
    );
    // An index older than one seen before (a replayed, authentic index).
    let replayed = install::accept_index(
        &host.state,
        registry.client(&acme.token).base(),
        &old_index,
        &registry.roots(),
        None,
        now(),
    );
    refused(
        replayed.map(|_| unreachable_install()),
        |refusal| matches!(refusal, Refusal::Rollback { served, seen } if served < seen),
    );
    // An expired index (a frozen registry): the same index a day later.
    refused(
        install_at(
            &registry,
            &host,
            &acme.token,
            "text-transform",
            now() + 86_400,
        ),
        |refusal| matches!(refusal, Refusal::Protocol(ProtocolError::Expired { .. })),
    );
    // A registry key other than the pinned one.
    let impostor = block_on(install::install(
        &registry.client(&acme.token),
        &host.state,
        asking(
            "text-transform",
            Some(&package::public_key_hex(&package::generate_key().unwrap())),
        ),
    ));
    refused(impostor, |refusal| {
        matches!(refusal, Refusal::KeyNotPinned { .. })
    });

    // High-water marks survive a restart of the host: reopen its state and try again.
    let dir = host._dir.path().to_path_buf();
    drop(host.state);
    let reopened = Host {
        state: InstallState::open(&dir).unwrap(),
        _dir: host._dir,
    };
    refused(
        install(&registry, &reopened, &acme.token, "text-transform@1.0.0"),
        |refusal| matches!(refusal, Refusal::Downgrade { highest, .. } if highest.to_string() == "1.1.0"),
    );

    // Mix and match: a second registry never listed text-transform@1.1.0 with its nodes, and
    // its `text-transform` belongs to someone else.
    let second = Registry::start(3600);
    let other = second.publisher("bob", "other");
    second
        .publish(
            &other.token,
            other.pack(&with_storage(), "counter", "1.0.0"),
        )
        .unwrap();
    let mixed = block_on(install::install(
        &second.client(&other.token),
        &reopened.state,
        asking("counter", Some(&second.public_key)),
    ));
    refused(
        mixed,
        |refusal| matches!(refusal, Refusal::NotOneSnapshot { name, version } if name == "text-transform" && version == "1.1.0"),
    );
    second
        .publish(
            &other.token,
            other.pack(&plain(), "text-transform", "9.0.0"),
        )
        .unwrap();
    let hijacked = block_on(install::install(
        &second.client(&other.token),
        &reopened.state,
        asking("text-transform", Some(&second.public_key)),
    ));
    assert!(
        matches!(&hijacked, Err(InstallError::PublisherChange { name, .. }) if name == "text-transform"),
        "{hijacked:?}"
    );
}

fn unreachable_install() -> Installed {
    panic!("the replayed index was accepted")
}

#[test]
fn a_package_served_under_another_name_is_refused() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let a = acme.pack(&plain(), "node-a", "1.0.0");
    let b = acme.pack(&plain(), "node-b", "1.0.0");
    registry.publish(&acme.token, a.clone()).unwrap();
    registry.publish(&acme.token, b).unwrap();
    let signed = registry.index(&acme.token);
    let key = package::verifying_key_from_hex(&registry.public_key).unwrap();
    let index = Index::verify(&signed, &key, now()).unwrap();
    let entry_b = index.entry("node-b", "1.0.0").unwrap();
    // A's file served for B: its hash is not what the index lists for B.
    assert!(install::check_package(&a, entry_b, &index).is_err());
    // Even with B's hash and length forged into the entry, A's signed manifest names A.
    let mut forged = entry_b.clone();
    forged.package_sha256 = warden_registry::protocol::sha256_hex(&a);
    forged.package_bytes = a.len() as u64;
    let refusal = install::check_package(&a, &forged, &index).err().unwrap();
    assert!(refusal.to_string().contains("node-a@1.0.0"), "{refusal}");
    // One flipped bit in the component is caught by the hash before anything is parsed.
    let entry_a = index.entry("node-a", "1.0.0").unwrap();
    let mut flipped = a.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(install::check_package(&flipped, entry_a, &index).is_err());
    assert!(install::check_package(&a, entry_a, &index).is_ok());
}

#[test]
fn an_update_asking_for_more_stays_disabled_until_approved() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "widget", "1.0.0"))
        .unwrap();
    let host = host();
    let first = install(&registry, &host, &acme.token, "widget").unwrap();
    assert!(first.enabled && first.requested.is_empty());
    // 1.1.0 asks for storage and a host it did not ask for before.
    let more = pack_with(
        &with_storage(),
        "widget",
        "1.1.0",
        "acme",
        &["api.example.com"],
        &acme.key,
    );
    registry.publish(&acme.token, more).unwrap();
    let update = install(&registry, &host, &acme.token, "widget").unwrap();
    assert!(!update.enabled);
    assert_eq!(update.pending(), vec!["storage-read", "storage-write"]);
    assert_eq!(update.pending_hosts(), vec!["api.example.com"]);
    assert!(
        matches!(host.state.load("widget"), Err(InstallError::Refused(refusal @ Refusal::Disabled { .. })) if refusal.to_string().contains("warden approve"))
    );
    // Approving part of it is not enough; the grant is the intersection.
    let partial = host
        .state
        .approve(
            "widget",
            Some(vec!["storage-read".into()]),
            Some(vec![]),
            None,
        )
        .unwrap();
    assert!(!partial.enabled);
    assert_eq!(partial.grant().unwrap().to_string(), "storage-read");
    let approved = host.state.approve("widget", None, None, None).unwrap();
    assert!(approved.enabled);
    assert_eq!(
        approved.grant().unwrap().to_string(),
        "storage-read,storage-write"
    );
    assert_eq!(approved.granted_hosts(), vec!["api.example.com"]);
    let (package, _) = host.state.load("widget").unwrap();
    assert_eq!(package.manifest.version, "1.1.0");

    // An operator who approves less on a first install gets a disabled node, not a wider grant.
    let other = self::host();
    let narrow = block_on(install::install(
        &registry.client(&acme.token),
        &other.state,
        InstallRequest {
            name: "widget",
            version: None,
            version_req: None,
            registry_key: Some(&registry.public_key),
            approve: Some(vec!["storage-read".into(), "http-get".into()]),
            approve_hosts: Some(vec![]),
            approve_limits: None,
            now: now(),
            accept_publisher_change: false,
            blobs: None,
        },
    ))
    .unwrap();
    assert!(!narrow.enabled);
    assert_eq!(narrow.grant().unwrap().to_string(), "storage-read");
}

#[test]
fn installed_files_are_reverified_and_the_registry_checks_itself() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let host = host();
    let installed = install(&registry, &host, &acme.token, "text-transform").unwrap();
    let file = host
        ._dir
        .path()
        .join("packages")
        .join(format!("{}.wpkg", installed.package_sha256));
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    assert!(matches!(
        host.state.load("text-transform"),
        Err(InstallError::Refused(Refusal::Altered { .. }))
    ));

    // The log the host checks holds the publish, and the index's checkpoint covers it.
    let log: Vec<warden_registry::protocol::LogEntry> =
        block_on(registry.client(&acme.token).get_json("v1/log")).unwrap();
    assert_eq!(log.len(), 2, "the key and the publish");
    let signed = registry.index(&acme.token);
    let key = package::verifying_key_from_hex(&registry.public_key).unwrap();
    let index = Index::verify(&signed, &key, now()).unwrap();
    warden_registry::protocol::verify_log(&log, index.log_size, &index.log_head).unwrap();
}

#[test]
fn the_registry_speaks_http2_over_tls() {
    let registry = Registry::start(3600);
    let (address, ca) = (registry.address(), registry.ca.clone());
    let negotiated = block_on(async move {
        let tls = connect_tls(address, ca, &[b"h2"]).await;
        tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    });
    assert_eq!(negotiated.as_deref(), Some(b"h2".as_slice()));
}

#[test]
fn a_rotated_registry_key_is_followed_through_signed_roots() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let host = host();
    install(&registry, &host, &acme.token, "text-transform").unwrap();
    let first_key = registry.public_key.clone();

    // Rotate the stopped registry's key, then serve again.
    let mut rotated_root = None;
    let mut registry = registry.restart(|dir| {
        let (mut store, _) = Store::open(dir, 3600).unwrap();
        rotated_root = Some(store.rotate_key(dir).unwrap());
        assert!(store.check().is_ok());
    });
    let root = rotated_root.unwrap();
    assert_eq!(root.version, 2);
    let new_key = std::fs::read_to_string(registry.dir.path().join("registry.pub"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(new_key, first_key);
    assert_eq!(root.keys, vec![new_key.clone()]);
    registry.public_key = new_key.clone();
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.1.0"))
        .unwrap();

    // The host pinned the first key; it follows the root signed by old and new and updates.
    let updated = block_on(install::install(
        &registry.client(&acme.token),
        &host.state,
        asking("text-transform", None),
    ))
    .unwrap();
    assert_eq!(updated.version, "1.1.0");
    let record = host
        .state
        .registry(registry.client(&acme.token).base())
        .unwrap()
        .unwrap();
    assert_eq!(record.root.version, 2);
    assert_eq!(record.root.keys, vec![new_key.clone()]);

    // A new host given only the old key also reaches the new root; a key no root lists fails.
    let fresh = self::host();
    block_on(install::install(
        &registry.client(&acme.token),
        &fresh.state,
        asking("text-transform", Some(&first_key)),
    ))
    .unwrap();
    let stranger = self::host();
    let unknown = block_on(install::install(
        &registry.client(&acme.token),
        &stranger.state,
        asking(
            "text-transform",
            Some(&package::public_key_hex(&package::generate_key().unwrap())),
        ),
    ));
    refused(unknown, |refusal| {
        matches!(refusal, Refusal::NoRootListsKey { .. })
    });

    // A root chain that skips a version, or a new root signed by the new key alone, is refused.
    let roots = registry.roots();
    let old_root = warden_registry::protocol::Root::parse(&roots[0]).unwrap();
    let thief = package::generate_key().unwrap();
    let hijack = warden_registry::protocol::Root {
        version: 2,
        keys: vec![package::public_key_hex(&thief)],
        threshold: 1,
        issued_at: now(),
    }
    .sign(&[&thief]);
    assert!(
        install::follow_roots(Some(&old_root), None, &[roots[0].clone(), hijack], "r").is_err()
    );
    // First use: a root that lists the operator's key but is signed only by an impostor's key
    // is refused, and so is a real root followed by one the impostor signed alone.
    let impostor = warden_registry::protocol::Root {
        version: 99,
        keys: vec![first_key.clone(), package::public_key_hex(&thief)],
        threshold: 1,
        issued_at: now(),
    }
    .sign(&[&thief]);
    let first_use = install::follow_roots(None, Some(&first_key), &[impostor], "r");
    assert!(
        matches!(
            &first_use,
            Err(InstallError::Refused(Refusal::NoRootListsKey { .. }))
        ),
        "{first_use:?}"
    );
    let forged_next = warden_registry::protocol::Root {
        version: 2,
        keys: vec![package::public_key_hex(&thief)],
        threshold: 1,
        issued_at: now(),
    }
    .sign(&[&thief]);
    assert!(
        install::follow_roots(
            None,
            Some(&first_key),
            &[roots[0].clone(), forged_next],
            "r"
        )
        .is_err()
    );
    let mut skipping = warden_registry::protocol::Root::parse(&roots[1]).unwrap();
    skipping.version = 3;
    let skipped = skipping.sign(&[]);
    assert!(install::follow_roots(Some(&old_root), None, &[skipped], "r").is_err());
}

#[test]
fn an_interrupted_rotation_is_finished_or_discarded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), 3600).unwrap();
    let key = store.public_key();
    drop(store);
    // A crash after the new key was written but before the database committed: discarded.
    let stray = package::generate_key().unwrap();
    package::write_secret_file(
        &dir.path().join("registry.key.next"),
        &package::secret_key_hex(&stray),
    )
    .unwrap();
    let (mut store, _) = Store::open(dir.path(), 3600).unwrap();
    assert_eq!(store.public_key(), key);
    assert!(!dir.path().join("registry.key.next").exists());
    assert!(store.check().is_ok());

    // A crash after the database committed but before the new key was moved into place:
    // finished. (Put the files back as they were at that moment.)
    let old_secret = std::fs::read_to_string(dir.path().join("registry.key")).unwrap();
    let root = store.rotate_key(dir.path()).unwrap();
    drop(store);
    std::fs::rename(
        dir.path().join("registry.key"),
        dir.path().join("registry.key.next"),
    )
    .unwrap();
    std::fs::write(dir.path().join("registry.key"), old_secret).unwrap();
    let (store, _) = Store::open(dir.path(), 3600).unwrap();
    assert_eq!(vec![store.public_key()], root.keys);
    assert!(!dir.path().join("registry.key.next").exists());
    assert!(store.check().is_ok());
}

#[test]
fn admins_cannot_take_over_owners_and_a_locked_out_publisher_is_recovered_by_an_admin() {
    let registry = Registry::start(3600);
    let admin = registry.user("ada", &["admin"], None);
    // An admin holds manage-users but not owner: it cannot mint or revoke the owner's tokens.
    assert_eq!(
        status(registry.post(
            &admin,
            "v1/tokens",
            json!({ "user": "owner", "kind": "pat" })
        )),
        403
    );
    let owner_token = registry
        .post(&registry.owner, "v1/tokens", json!({ "kind": "pat" }))
        .unwrap();
    let id = owner_token["record"]["id"].as_str().unwrap();
    assert_eq!(
        status(registry.post(&admin, &format!("v1/tokens/{id}/revoke"), json!({}))),
        403
    );
    // It can manage users below it.
    registry.user("rita", &["reader"], None);
    registry
        .post(
            &admin,
            "v1/tokens",
            json!({ "user": "rita", "kind": "api-key" }),
        )
        .unwrap();

    // A thief with a publisher's token revokes every key: the publisher cannot add one back...
    let acme = registry.publisher("alice", "acme");
    let old = package::public_key_hex(&acme.key);
    registry
        .post(
            &acme.token,
            &format!("v1/publishers/acme/keys/{old}/revoke"),
            json!({}),
        )
        .unwrap();
    let fresh = package::generate_key().unwrap();
    assert_eq!(
        status(registry.add_key(&acme.token, "acme", &fresh, None)),
        403
    );
    // ...but an admin can, and the same key is never registered twice.
    registry.add_key(&admin, "acme", &fresh, None).unwrap();
    assert_eq!(status(registry.add_key(&admin, "acme", &fresh, None)), 409);
}

#[test]
fn request_sizes_are_bounded_and_checked_after_authentication() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    let big = vec![0u8; warden_registry::protocol::DEFAULT_MAX_PACKAGE_BYTES + 1];
    // Anonymous: refused before the body is read.
    let anonymous = Client::new(&registry.url, std::slice::from_ref(&registry.ca), None).unwrap();
    let answer = block_on(anonymous.send(
        hyper::Method::POST,
        "v1/packages",
        Some(("application/octet-stream", big.clone())),
        1 << 20,
    ));
    assert!(matches!(answer, Err(ClientError::Status { status, .. }) if status == 401));
    // Authenticated but over the limit.
    assert_eq!(status(registry.publish(&acme.token, big)), 413);
    // JSON bodies are small.
    let huge_name = "x".repeat(100 * 1024);
    assert_eq!(
        status(registry.post(
            &registry.owner,
            "v1/users",
            json!({ "name": huge_name, "roles": [] })
        )),
        413
    );
    // Plain HTTP is never used for a registry.
    assert!(Client::new("http://127.0.0.1:1", &[], None).is_err());
}

#[test]
fn an_update_asking_for_looser_limits_waits_for_approval() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "widget", "1.0.0"))
        .unwrap();
    let host = host();
    let first = install(&registry, &host, &acme.token, "widget").unwrap();
    assert_eq!(first.approved_limits, "default");
    let mut manifest = package::decode(&acme.pack(&plain(), "widget", "1.1.0"))
        .unwrap()
        .manifest;
    manifest.limits = "permissive".into();
    let looser = package::pack(&std::fs::read(plain()).unwrap(), manifest, &acme.key).unwrap();
    registry.publish(&acme.token, looser).unwrap();
    let update = install(&registry, &host, &acme.token, "widget").unwrap();
    assert!(!update.enabled);
    assert_eq!(update.pending_limits().as_deref(), Some("permissive"));
    // Approving only capabilities leaves the preset pending when one is named.
    let still = host
        .state
        .approve("widget", Some(vec![]), Some(vec![]), Some("default".into()))
        .unwrap();
    assert!(!still.enabled);
    let approved = host.state.approve("widget", None, None, None).unwrap();
    assert!(approved.enabled && approved.approved_limits == "permissive");
    // Sets and unknown names are not approvals.
    for bad in ["all", "standard", "storage-al"] {
        assert!(matches!(
            host.state
                .approve("widget", Some(vec![bad.into()]), None, None),
            Err(InstallError::Usage(_))
        ));
    }
}

#[test]
fn sync_blocks_nodes_whose_signing_key_was_revoked() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let host = host();
    install(&registry, &host, &acme.token, "text-transform").unwrap();
    let client = registry.client(&acme.token);
    assert!(
        block_on(install::sync(&client, &host.state, now()))
            .unwrap()
            .is_empty()
    );
    assert!(host.state.load("text-transform").is_ok());
    // The key turns out to have been stolen from the start: revoke it back to when it was
    // added (acme has no other key to sign that, so an admin does it).
    let old = package::public_key_hex(&acme.key);
    registry
        .post(
            &registry.owner,
            &format!("v1/publishers/acme/keys/{old}/revoke"),
            json!({ "revoked_at": 0 }),
        )
        .unwrap();
    let blocked = block_on(install::sync(&client, &host.state, now())).unwrap();
    assert_eq!(blocked.len(), 1);
    assert!(
        blocked[0]
            .blocked
            .as_deref()
            .unwrap_or_default()
            .contains("revoked")
    );
    assert!(matches!(
        host.state.load("text-transform"),
        Err(InstallError::Refused(Refusal::Blocked { reason, .. })) if reason.contains("revoked")
    ));
}

#[test]
fn offline_recovery_needs_an_existing_registry() {
    let empty = tempfile::tempdir().unwrap();
    assert!(Store::open_existing(empty.path(), 3600).is_err());
    assert!(!empty.path().join("registry.redb").exists());
    let registry = Registry::start(3600);
    let registry = registry.restart(|dir| {
        let store = Store::open_existing(dir, 3600).unwrap();
        let (token, _) = store
            .issue_token_offline("owner", warden_registry::protocol::TokenKind::Pat, 3600)
            .unwrap();
        std::fs::write(dir.join("recovered"), token).unwrap();
    });
    let token = std::fs::read_to_string(registry.dir.path().join("recovered")).unwrap();
    registry
        .post(
            &token,
            "v1/users",
            json!({ "name": "newbie", "roles": ["reader"] }),
        )
        .unwrap();
    let trail: Json = block_on(registry.client(&token).get_json("v1/audit")).unwrap();
    assert!(trail.to_string().contains("offline"));
}

#[test]
fn a_key_slipped_into_the_database_is_never_signed() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    // Someone with write access to the stopped registry's disk adds a key for `acme`.
    let intruder = package::generate_key().unwrap();
    let registry = registry.restart(|dir| {
        let db = redb::Database::create(dir.join("registry.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<&str, &[u8]> =
                redb::TableDefinition::new("publisher_keys");
            let mut keys = txn.open_table(table).unwrap();
            let entry = json!({
                "publisher": "acme",
                "public_key": package::public_key_hex(&intruder),
                "added_at": 0,
                "revoked_at": null
            });
            let public_key = package::public_key_hex(&intruder);
            keys.insert(public_key.as_str(), entry.to_string().as_bytes())
                .unwrap();
        }
        txn.commit().unwrap();
        drop(db);
        // The offline check sees it.
        let store = Store::open_existing(dir, 3600).unwrap();
        let error = store.check().err().unwrap();
        assert!(error.to_string().contains("publisher keys"), "{error}");
    });
    // The registry refuses to sign an index with it, so the intruder's package never lands.
    let forged = pack_with(&plain(), "text-transform", "6.6.6", "acme", &[], &intruder);
    assert_eq!(status(registry.publish(&acme.token, forged)), 500);
    let index = registry.index(&acme.token);
    assert!(!index.signed.contains(&package::public_key_hex(&intruder)));
}

#[test]
fn a_root_with_offline_keys_cannot_be_rotated_by_the_signing_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), 3600).unwrap();
    let offline = package::generate_key().unwrap();
    let offline_hex = package::public_key_hex(&offline);
    // Listing an offline key with a threshold of two needs that key's signature too.
    assert!(
        store
            .rotate_root(dir.path(), std::slice::from_ref(&offline_hex), 2, &[])
            .is_err()
    );
    let root = store
        .rotate_root(
            dir.path(),
            std::slice::from_ref(&offline_hex),
            2,
            std::slice::from_ref(&offline),
        )
        .unwrap();
    assert_eq!((root.version, root.keys.len(), root.threshold), (2, 2, 2));
    // A thief holding only the online signing key cannot make the next root.
    let refused = store.rotate_key(dir.path()).err().unwrap();
    assert!(refused.to_string().contains("--cosign"), "{refused}");
    assert!(!dir.path().join("registry.key.next").exists());
    // With the offline key co-signing, the operator can.
    let third = store
        .rotate_root(
            dir.path(),
            std::slice::from_ref(&offline_hex),
            2,
            &[offline],
        )
        .unwrap();
    assert_eq!(third.version, 3);
    assert!(store.check().is_ok());
}

#[test]
fn approving_named_capabilities_leaves_hosts_and_limits_pending() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "widget", "1.0.0"))
        .unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    {
        let host = Host {
            state: InstallState::open(state_dir.path()).unwrap(),
            _dir: tempfile::tempdir().unwrap(),
        };
        install(&registry, &host, &acme.token, "widget").unwrap();
        let more = pack_with(
            &with_storage(),
            "widget",
            "1.1.0",
            "acme",
            &["api.example.com"],
            &acme.key,
        );
        registry.publish(&acme.token, more).unwrap();
        assert!(
            !install(&registry, &host, &acme.token, "widget")
                .unwrap()
                .enabled
        );
    }
    let approve = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("approve")
            .arg("widget")
            .args(args)
            .arg("--state")
            .arg(state_dir.path())
            .output()
            .unwrap()
    };
    let named = approve(&["--grant", "storage-read,storage-write"]);
    let said = String::from_utf8_lossy(&named.stdout).into_owned();
    assert!(
        said.contains("still disabled") && said.contains("hosts []"),
        "{said}"
    );
    let refused = approve(&["--grant", "all"]);
    assert_eq!(refused.status.code(), Some(2));
    let rest = approve(&[]);
    let said = String::from_utf8_lossy(&rest.stdout).into_owned();
    assert!(
        said.contains("enabled") && said.contains("api.example.com"),
        "{said}"
    );
}

#[test]
fn a_registry_whose_key_is_missing_does_not_start_with_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), 3600).unwrap());
    std::fs::remove_file(dir.path().join("registry.key")).unwrap();
    let refused = Store::open(dir.path(), 3600).err().unwrap();
    assert!(refused.to_string().contains("restore the key"), "{refused}");
    assert!(!dir.path().join("registry.key").exists());
}

#[test]
fn offline_work_signs_with_the_servers_index_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), 600).unwrap();
    store.record_index_ttl().unwrap();
    drop(store);
    let mut store = Store::open_existing(dir.path(), 86_400).unwrap();
    store.rotate_key(dir.path()).unwrap();
    let signed = store.index().unwrap();
    let key = package::verifying_key_from_hex(&store.public_key()).unwrap();
    let index = Index::verify(&signed, &key, now()).unwrap();
    assert_eq!(index.expires_at - index.issued_at, 600);
}

#[test]
fn sync_blocks_an_unreadable_install_and_goes_on() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    for name in ["first-node", "second-node"] {
        registry
            .publish(&acme.token, acme.pack(&plain(), name, "1.0.0"))
            .unwrap();
    }
    let host = host();
    let first = install(&registry, &host, &acme.token, "first-node").unwrap();
    install(&registry, &host, &acme.token, "second-node").unwrap();
    // The first node's file is lost (a disk failure, a careless cleanup).
    std::fs::remove_file(
        host._dir
            .path()
            .join("packages")
            .join(format!("{}.wpkg", first.package_sha256)),
    )
    .unwrap();
    let blocked = block_on(install::sync(
        &registry.client(&acme.token),
        &host.state,
        now(),
    ))
    .unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].name, "first-node");
    assert!(host.state.load("second-node").is_ok());
}

#[test]
fn a_key_is_registered_in_one_spelling_only() {
    let registry = Registry::start(3600);
    let token = registry.user("alice", &["publisher"], Some("acme"));
    let secret = package::generate_key().unwrap();
    let key = package::public_key_hex(&secret);
    for spelling in [format!("{key}\n"), format!(" {key}"), key.to_uppercase()] {
        assert_eq!(
            status(registry.post(
                &token,
                "v1/publishers/acme/keys",
                json!({ "public_key": spelling })
            )),
            400
        );
    }
    registry.add_key(&token, "acme", &secret, None).unwrap();
}

#[test]
fn downloads_in_flight_are_bounded() {
    use tokio::io::AsyncWriteExt;
    let registry = Registry::start_with_downloads(1);
    let acme = registry.publisher("alice", "acme");
    // A valid node padded with a 24 MiB custom section: more than loopback buffers hold.
    let mut component = std::fs::read(plain()).unwrap();
    let payload = 24 * 1024 * 1024 + 4;
    component.push(0);
    let mut size = payload as u64;
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        component.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    component.extend_from_slice(&[3, b'p', b'a', b'd']);
    component.resize(component.len() + payload - 4, 0);
    let padded = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(padded.path(), &component).unwrap();
    registry
        .publish(&acme.token, acme.pack(padded.path(), "big", "1.0.0"))
        .unwrap();

    // A client that asks for the package and never reads it holds the only download slot.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (address, ca) = (registry.address(), registry.ca.clone());
    let request = format!(
        "GET /v1/packages/big/1.0.0 HTTP/1.1\r\nhost: {address}\r\nauthorization: PAT {}\r\n\r\n",
        acme.token
    );
    let stalled = runtime.block_on(async move {
        let mut tls = connect_tls(address, ca, &[]).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        tls
    });
    let client = registry.client(&acme.token);
    let get = || block_on(client.send(hyper::Method::GET, "v1/packages/big/1.0.0", None, 64 << 20));
    // Wait (boundedly) for the stalled request to take the slot; then the next is refused.
    let mut refused = false;
    for _ in 0..100 {
        match get() {
            Err(ClientError::Status { status, .. }) if status == 503 => {
                refused = true;
                break;
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    assert!(
        refused,
        "a second download was served while the first held the slot"
    );
    // Closing the stalled connection frees the slot.
    drop(stalled);
    drop(runtime);
    let mut served = false;
    for _ in 0..100 {
        if get().is_ok() {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        served,
        "the slot was not freed when the stalled client went away"
    );
}
