//! The host's log: fetched a page at a time from its last verified checkpoint, each page
//! chaining from what it verified before; times only move forward; and a host's first start is
//! crash-safe.

use super::*;
use std::collections::BTreeMap;
use std::sync::Mutex;
use warden_registry::protocol::{
    self, Event, IndexEntry, KeyEntry, LogEntry, Root, SignedRoot, TokenKind,
};

/// The `/v1/log` requests a registry answered: the query and the size of the answer.
type Seen = Arc<Mutex<Vec<(String, u64)>>>;

/// A registry whose `/v1/log` answers are recorded, and its store for adding history fast.
fn start_counted() -> (Registry, Arc<Store>, Seen) {
    use axum::body::HttpBody;
    let dir = tempfile::tempdir().unwrap();
    let (store, bootstrap) = Store::open(dir.path(), 3600).unwrap();
    let store = Arc::new(store);
    let seen: Seen = Arc::default();
    let counter = seen.clone();
    let router = server::router(store.clone(), protocol::DEFAULT_MAX_PACKAGE_BYTES).layer(
        axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                async move {
                    let uri = request.uri().clone();
                    let response = next.run(request).await;
                    if uri.path() == "/v1/log" {
                        let bytes = response.body().size_hint().exact().unwrap_or(u64::MAX);
                        let query = uri.query().unwrap_or_default().to_string();
                        counter.lock().unwrap().push((query, bytes));
                    }
                    response
                }
            },
        ),
    );
    let (url, ca, runtime) = serve_router(dir.path(), router);
    let registry = Registry {
        public_key: store.public_key(),
        owner: bootstrap.unwrap(),
        dir,
        url,
        ca,
        _runtime: runtime,
    };
    (registry, store, seen)
}

/// Serves `router` over TLS with the development certificate of `dir`.
fn serve_router(dir: &Path, router: axum::Router) -> (String, Vec<u8>, tokio::runtime::Runtime) {
    let tls = tls::server_config(dir, None, None).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    runtime.spawn(server::serve(listener, tls, router));
    let pem = std::fs::read(tls::dev_certificate_path(dir)).unwrap();
    let ca = warden_host::tls::certificates_from_pem_or_der(&pem).unwrap()[0].clone();
    (url, ca, runtime)
}

#[test]
fn hosts_fetch_only_the_log_entries_they_have_not_verified() {
    let (registry, store, seen) = start_counted();
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    // A long history, more than a page: publishers' first keys, added in-process (the
    // registry replays its whole log on every change, so signed rotations would be slow).
    let owner = store.authenticate(TokenKind::Pat, &registry.owner).unwrap();
    let history = protocol::MAX_LOG_PAGE_ENTRIES as usize + 50;
    for number in 0..history {
        let secret = package::generate_key().unwrap();
        let key = package::public_key_hex(&secret);
        let publisher = format!("publisher-{number}");
        let possession =
            protocol::sign_possession(&store.registry_id().unwrap(), &publisher, &secret);
        store
            .add_key(&owner, &publisher, &key, &possession, None)
            .unwrap();
    }
    let whole = store.log().unwrap().len() as u64;
    assert_eq!(whole, history as u64 + 2);

    let host = host();
    install(&registry, &host, &acme.token, "text-transform").unwrap();
    let first_install: Vec<(String, u64)> = seen.lock().unwrap().drain(..).collect();
    // Pages from 0: the first full, the next from where it ended.
    assert_eq!(first_install.len(), 2, "{first_install:?}");
    assert!(
        first_install[0].0.starts_with("from=0&"),
        "{first_install:?}"
    );
    assert!(
        first_install[1]
            .0
            .starts_with(&format!("from={}&", protocol::MAX_LOG_PAGE_ENTRIES)),
        "{first_install:?}"
    );
    let history_bytes: u64 = first_install.iter().map(|(_, bytes)| bytes).sum();

    // Three more changes; the next sync fetches those three and nothing before them.
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.1.0"))
        .unwrap();
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.2.0"))
        .unwrap();
    registry
        .post(
            &acme.token,
            "v1/packages/text-transform/1.1.0/yank",
            json!({}),
        )
        .unwrap();
    let report = block_on(install::sync_report(
        &registry.client(&acme.token),
        &host.state,
        now(),
    ))
    .unwrap();
    assert_eq!(report.log_entries_fetched, 3);
    let sync: Vec<(String, u64)> = seen.lock().unwrap().drain(..).collect();
    assert_eq!(sync.len(), 1, "{sync:?}");
    assert!(sync[0].0.starts_with(&format!("from={whole}&")), "{sync:?}");
    assert!(
        sync[0].1 * 50 < history_bytes,
        "the sync read {} bytes of log, the whole history is {history_bytes}",
        sync[0].1
    );
    println!(
        "history of {whole} entries: first install read {history_bytes} bytes of log in 2 pages; the sync after 3 changes read {} bytes",
        sync[0].1
    );
    // The update installs on the kept history plus nothing new: no log request at all.
    let updated = install(&registry, &host, &acme.token, "text-transform").unwrap();
    assert_eq!(updated.version, "1.2.0");
    assert!(seen.lock().unwrap().is_empty());
    // What the host kept is the registry's log, entry for entry.
    let id = &updated.registry;
    assert_eq!(host.state.log_entries(id).unwrap(), store.log().unwrap());

    // The old form of the request still answers with the whole log; a bad query is a 400.
    let client = registry.client(&acme.token);
    let all: Vec<LogEntry> = block_on(client.get_json_limited("v1/log", 64 << 20)).unwrap();
    assert_eq!(all.len() as u64, whole + 3);
    for query in ["v1/log?limit=5", "v1/log?from=x", "v1/log?from=1&evil=2"] {
        let answer: Result<Json, ClientError> = block_on(client.get_json(query));
        assert_eq!(status(answer), 400, "{query}");
    }
    let past_the_end: Vec<LogEntry> =
        block_on(client.get_json(&format!("v1/log?from={}", whole + 100))).unwrap();
    assert!(past_the_end.is_empty());
}

/// What a malicious registry serves: correctly signed by its own key, crafted otherwise.
#[derive(Default)]
pub(super) struct Forged {
    roots: Vec<SignedRoot>,
    index: Option<Signed>,
    pub(super) log: Vec<LogEntry>,
    packages: BTreeMap<String, Vec<u8>>,
    /// The `from` of every page asked for.
    pub(super) asked: Vec<u64>,
    /// The most entries one page holds (`None`: what was asked for).
    pub(super) page_cap: Option<usize>,
}

pub(super) type Shared = Arc<Mutex<Forged>>;

pub(super) fn serve_forged(
    forged: Shared,
) -> (tempfile::TempDir, String, Vec<u8>, tokio::runtime::Runtime) {
    use axum::extract::{Path as UrlPath, RawQuery};
    use axum::routing::get;
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (forged.clone(), forged.clone(), forged.clone(), forged);
    let router = axum::Router::new()
        .route(
            "/v1/roots",
            get(move || async move { axum::Json(a.lock().unwrap().roots.clone()) }),
        )
        .route(
            "/v1/index",
            get(move || async move { axum::Json(b.lock().unwrap().index.clone()) }),
        )
        .route(
            "/v1/log",
            get(move |RawQuery(query): RawQuery| async move {
                let mut forged = c.lock().unwrap();
                let number = |name: &str| {
                    query
                        .as_deref()
                        .unwrap_or_default()
                        .split('&')
                        .find_map(|pair| {
                            pair.strip_prefix(name)?
                                .strip_prefix('=')?
                                .parse::<usize>()
                                .ok()
                        })
                };
                let from = number("from").unwrap_or(0);
                forged.asked.push(from as u64);
                let limit = number("limit")
                    .unwrap_or(usize::MAX - from)
                    .min(forged.page_cap.unwrap_or(usize::MAX));
                let end = (from + limit).min(forged.log.len());
                axum::Json(forged.log.get(from..end).unwrap_or_default().to_vec())
            }),
        )
        .route(
            "/v1/packages/{name}/{version}",
            get(
                move |UrlPath((name, version)): UrlPath<(String, String)>| async move {
                    d.lock()
                        .unwrap()
                        .packages
                        .get(&format!("{name}@{version}"))
                        .cloned()
                        .unwrap_or_default()
                },
            ),
        );
    let (url, ca, runtime) = serve_router(dir.path(), router);
    (dir, url, ca, runtime)
}

/// A log of `events` at `times`, chained.
pub(super) fn chain(events: Vec<(u64, Event)>) -> Vec<LogEntry> {
    let mut entries: Vec<LogEntry> = Vec::new();
    for (time, event) in events {
        entries.push(LogEntry {
            sequence: entries.len() as u64,
            time,
            previous: entries
                .last()
                .map(LogEntry::hash)
                .unwrap_or(protocol::LOG_ROOT.into()),
            event,
        });
    }
    entries
}

/// The malicious registry's keys, packages and index signing.
pub(super) struct Crafter {
    pub(super) registry: SigningKey,
    publisher: SigningKey,
    packages: BTreeMap<String, Vec<u8>>,
    version: u64,
}

impl Crafter {
    pub(super) fn new() -> Crafter {
        let publisher = package::generate_key().unwrap();
        let packages = ["1.0.0", "1.1.0", "1.2.0"]
            .iter()
            .map(|version| {
                let bytes = pack_with(&plain(), "text-transform", version, "acme", &[], &publisher);
                (format!("text-transform@{version}"), bytes)
            })
            .collect();
        Crafter {
            registry: package::generate_key().unwrap(),
            publisher,
            packages,
            version: 0,
        }
    }

    fn roots(&self) -> Vec<SignedRoot> {
        vec![
            Root {
                version: 1,
                keys: vec![package::public_key_hex(&self.registry)],
                threshold: 1,
                issued_at: 0,
            }
            .sign(&[&self.registry]),
        ]
    }

    pub(super) fn key_added(&self) -> Event {
        Event::KeyAdded {
            publisher: "acme".into(),
            public_key: package::public_key_hex(&self.publisher),
            signed_by: None,
            signature: None,
            possession: protocol::sign_possession(
                &package::public_key_hex(&self.registry),
                "acme",
                &self.publisher,
            ),
        }
    }

    pub(super) fn published(&self, version: &str) -> Event {
        Event::Publish {
            name: "text-transform".into(),
            version: version.into(),
            publisher: "acme".into(),
            package_sha256: protocol::sha256_hex(
                &self.packages[&format!("text-transform@{version}")],
            ),
        }
    }

    fn revoked(&self, at: u64) -> Event {
        Event::KeyRevoked {
            publisher: "acme".into(),
            public_key: package::public_key_hex(&self.publisher),
            revoked_at: at,
            // Marked as an admin's, so a back-dated time is not what the replay refuses: only
            // the order of entry times is under test.
            signed_by: None,
            signature: None,
            by_admin: true,
        }
    }

    /// An index, signed by the registry's key, that lists what `log` says whether or not it
    /// replays (times are read from the log as they are).
    fn index(&mut self, log: &[LogEntry]) -> Signed {
        self.version += 1;
        let mut packages = Vec::new();
        let mut key = KeyEntry {
            publisher: "acme".into(),
            public_key: package::public_key_hex(&self.publisher),
            added_at: 0,
            revoked_at: None,
        };
        for entry in log {
            match &entry.event {
                Event::KeyAdded { .. } => key.added_at = entry.time,
                Event::KeyRevoked { revoked_at, .. } => key.revoked_at = Some(*revoked_at),
                Event::Publish { version, .. } => {
                    let bytes = &self.packages[&format!("text-transform@{version}")];
                    let manifest = package::decode(bytes).unwrap().manifest;
                    packages.push(IndexEntry {
                        name: manifest.name,
                        version: manifest.version,
                        publisher: manifest.publisher,
                        package_sha256: protocol::sha256_hex(bytes),
                        package_bytes: bytes.len() as u64,
                        component_sha256: manifest.component_sha256,
                        capabilities: manifest.capabilities,
                        signers: vec![key.public_key.clone()],
                        published_at: entry.time,
                        yanked: false,
                    });
                }
                Event::Yank { .. } => {}
            }
        }
        Index {
            registry: package::public_key_hex(&self.registry),
            version: self.version,
            issued_at: now(),
            expires_at: now() + 3600,
            log_size: log.len() as u64,
            log_head: log
                .last()
                .map(LogEntry::hash)
                .unwrap_or(protocol::LOG_ROOT.into()),
            packages,
            keys: vec![key],
        }
        .sign(&self.registry)
    }

    /// Serves `log` with a signed index of it.
    pub(super) fn serve(&mut self, forged: &Shared, log: Vec<LogEntry>) {
        let index = self.index(&log);
        let mut forged = forged.lock().unwrap();
        forged.roots = self.roots();
        forged.index = Some(index);
        forged.log = log;
        forged.packages = self.packages.clone();
    }
}

pub(super) fn install_forged(
    url: &str,
    ca: &[u8],
    host: &Host,
    key: &str,
    node: &str,
) -> Result<Installed, InstallError> {
    let client = Client::new(
        url,
        &[ca.to_vec()],
        Some(Credential::from_token("wdn_pat_x")),
    )
    .unwrap();
    let (name, version) = node.split_once('@').unwrap();
    block_on(install::install(
        &client,
        &host.state,
        InstallRequest {
            name,
            version: Some(version),
            registry_key: Some(key),
            now: now(),
            ..InstallRequest::default()
        },
    ))
}

#[test]
fn a_publish_back_dated_below_its_keys_revocation_is_refused() {
    let forged: Shared = Arc::default();
    let (_dir, url, ca, _runtime) = serve_forged(forged.clone());
    let mut crafter = Crafter::new();
    let key = package::public_key_hex(&crafter.registry);
    // The key is revoked from 200 (logged at 300); then a publish by it is logged at 190, so
    // its signature looks valid. The index, signed by the registry, agrees with the log.
    let backdated = chain(vec![
        (100, crafter.key_added()),
        (150, crafter.published("1.0.0")),
        (300, crafter.revoked(200)),
        (190, crafter.published("1.1.0")),
    ]);
    crafter.serve(&forged, backdated);
    let host = host();
    refused(
        install_forged(&url, &ca, &host, &key, "text-transform@1.1.0"),
        |refusal| matches!(refusal, Refusal::Protocol(ProtocolError::BrokenLog(m)) if m.contains("before the time 300")),
    );
    assert!(host.state.installed("text-transform").unwrap().is_none());

    // The control: the same events in the order they claim to have happened install, so what
    // was refused above is the time going backwards and nothing else.
    let mut honest = Crafter {
        registry: package::generate_key().unwrap(),
        publisher: crafter.publisher.clone(),
        packages: crafter.packages.clone(),
        version: 0,
    };
    let in_order = chain(vec![
        (100, honest.key_added()),
        (150, honest.published("1.0.0")),
        (190, honest.published("1.1.0")),
        (300, honest.revoked(200)),
    ]);
    honest.serve(&forged, in_order);
    let other = self::host();
    let installed = install_forged(
        &url,
        &ca,
        &other,
        &package::public_key_hex(&honest.registry),
        "text-transform@1.1.0",
    )
    .unwrap();
    assert_eq!(installed.version, "1.1.0");
}

#[test]
fn a_log_page_that_does_not_chain_from_the_verified_head_is_refused() {
    let forged: Shared = Arc::default();
    let (_dir, url, ca, _runtime) = serve_forged(forged.clone());
    let mut crafter = Crafter::new();
    let key = package::public_key_hex(&crafter.registry);
    let seen = chain(vec![
        (100, crafter.key_added()),
        (150, crafter.published("1.0.0")),
        (160, crafter.published("1.1.0")),
    ]);
    crafter.serve(&forged, seen.clone());
    let host = host();
    install_forged(&url, &ca, &host, &key, "text-transform@1.0.0").unwrap();
    // The identity of a registry is the first key of its root version 1.
    let id = key.clone();
    assert_eq!(host.state.log_entries(&id).unwrap(), seen);

    // The registry rewrites its history (1.1.0 is gone, 1.2.0 in its place) and signs the new
    // head. A host asking only for what follows its checkpoint gets a page that does not
    // chain from the entry it verified.
    let rewritten = chain(vec![
        (100, crafter.key_added()),
        (150, crafter.published("1.0.0")),
        (160, crafter.published("1.2.0")),
        (170, crafter.revoked(170)),
    ]);
    crafter.serve(&forged, rewritten);
    forged.lock().unwrap().asked.clear();
    let result = block_on(install::sync(
        &Client::new(
            &url,
            std::slice::from_ref(&ca),
            Some(Credential::from_token("wdn_pat_x")),
        )
        .unwrap(),
        &host.state,
        now(),
    ));
    assert!(
        matches!(
            &result,
            Err(InstallError::Refused(Refusal::LogDoesNotExtend { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(
        forged.lock().unwrap().asked,
        vec![3],
        "only the new entries were asked for"
    );
    // Nothing of the forged history was kept.
    assert_eq!(host.state.log_entries(&id).unwrap(), seen);
    assert_eq!(host.state.registry(&id).unwrap().unwrap().log_size, 3);
    // A page that skips an entry is refused the same way.
    let longer = {
        let mut entries = seen.clone();
        let next = chain(vec![
            (100, crafter.key_added()),
            (150, crafter.published("1.0.0")),
            (160, crafter.published("1.1.0")),
            (170, crafter.published("1.2.0")),
            (180, crafter.revoked(180)),
        ]);
        entries.extend(next[3..].iter().cloned());
        entries
    };
    crafter.serve(&forged, longer.clone());
    forged.lock().unwrap().log.remove(3);
    let skipped = install_forged(&url, &ca, &host, &key, "text-transform@1.0.0");
    assert!(
        matches!(
            &skipped,
            Err(InstallError::Refused(Refusal::LogDoesNotExtend { .. }))
        ),
        "{skipped:?}"
    );
    // Served whole and honest, the same history installs.
    forged.lock().unwrap().log = longer;
    assert!(install_forged(&url, &ca, &host, &key, "text-transform@1.0.0").is_ok());
    assert_eq!(host.state.log_entries(&id).unwrap().len(), 5);
}

#[test]
fn a_first_start_killed_at_any_moment_leaves_nothing_or_a_whole_state() {
    use std::os::unix::process::ExitStatusExt;
    let seed = std::env::var("WARDEN_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| now() | 1);
    println!("host first-start crash seed: {seed} (replay with WARDEN_CRASH_SEED={seed})");
    let mut random = Random(seed);
    let warden = |state: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command.arg("installed").arg("--state").arg(state);
        command
    };
    // How long one whole first start takes here, to spread the kills over it.
    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    assert!(
        warden(&work.path().join("timing"))
            .output()
            .unwrap()
            .status
            .success()
    );
    let span = started.elapsed().as_micros().max(1000) as u64;
    let (mut killed, mut torn) = (0, 0);
    for round in 0..60 {
        let state = work.path().join(format!("state-{round}"));
        let mut child = warden(&state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(random.next() % span));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed += 1;
        }
        // What the kill left: a temporary means it landed while the state was being made.
        let left = std::fs::read_dir(&state)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if left.iter().any(|name| name.starts_with("host.redb.new")) {
            torn += 1;
        }
        let next = warden(&state).output().unwrap();
        assert!(
            next.status.success(),
            "round {round}: the start after a kill failed: {}",
            String::from_utf8_lossy(&next.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&next.stdout), "nothing installed\n");
        let left: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("host.redb.new"))
            .collect();
        assert!(left.is_empty(), "round {round}: {left:?} left behind");
        assert!(InstallState::open(&state).is_ok());
    }
    println!(
        "{killed} of 60 first starts killed before they finished, {torn} while the state was being made"
    );
    assert!(
        killed >= 10 && torn >= 1,
        "only {killed} kills landed during a start, {torn} while the state was being made: the test measured little"
    );
}
