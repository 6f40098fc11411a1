//! Workload 8: the cluster. Queued runs of the no-op node through 1, 2 and 3 `warden serve`
//! daemons sharing one PostgreSQL, and the queue's own rate in PostgreSQL (claims and answers per
//! second, with no daemon), which bounds what any number of daemons can do.
//!
//! Everything shares this machine's cores: the daemons, PostgreSQL and the client. More daemons
//! on the same cores do not add CPU; what the measurement shows is whether the queue lets them
//! share the work without losing throughput, and what the database's side costs per run.

use super::daemon::Served;
use super::support;
use super::{Scale, Table};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use serde_json::Value as Json;
use std::path::Path;
use std::time::{Duration, Instant};
use warden_cluster::test_services::shared_postgres;
use warden_cluster::{Database, DatabaseOptions, NewRun, QueueBounds, RunQueue};

const OPERATOR_KEY: &str = "bench-operator-key-0123456789";

/// Client connections sending requests at once, in all.
const CLIENTS: usize = 16;

fn write_fixture(dir: &Path, bytes: &[u8]) {
    let key = warden_package::generate_key().expect("a signing key");
    let package = warden_package::pack(bytes, super::package_manifest("0.1.0"), &key)
        .expect("sign the bench node");
    std::fs::create_dir_all(dir.join("packages")).expect("the package directory");
    std::fs::write(dir.join("packages/bench-0.1.0.wpkg"), package).expect("write the package");
    let text = format!(
        r#"[api]
listen = "127.0.0.1:0"
max_connections = 4096
max_connections_per_ip = 4096

[storage]
data_dir = "data"

[host]
sync_interval = "off"
concurrency = 8
queue = 4096
queue_timeout = "60s"
shutdown_grace = "1s"

[cluster]
database_url_env = "WARDEN_BENCH_DATABASE_URL"
max_queued_per_caller = 1000000
max_queued = 1000000

[[directories]]
name = "local"
path = "packages"
trusted_keys = ["{key}"]

[[nodes]]
name = "bench"
grant = ["storage-read", "http-get"]
queue = 4096
"#,
        key = warden_package::public_key_hex(&key),
    );
    std::fs::write(dir.join("host.toml"), text).expect("write the manifest");
}

fn start(dir: &Path, url: &str) -> Served {
    super::daemon::start_with(dir, OPERATOR_KEY, &[("WARDEN_BENCH_DATABASE_URL", url)])
}

/// One kept-alive HTTP/1.1 connection to a daemon.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    address: String,
}

impl Client {
    async fn connect(served: &Served) -> Client {
        let stream =
            support::connect_tls(served.address.clone(), served.ca.clone(), &[b"http/1.1"]).await;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("an HTTP/1.1 handshake");
        tokio::spawn(connection);
        Client {
            sender,
            address: served.address.clone(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> (u16, Json) {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.address))
            .header("content-type", "application/json")
            .header("x-api-key", OPERATOR_KEY)
            .body(http_body_util::Full::new(Bytes::from(body.to_string())))
            .expect("a request");
        let response = self.sender.send_request(request).await.expect("an answer");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the answer's body")
            .to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
    }
}

/// Queues `runs` runs through `daemons` (clients spread over them), then reads every answer on
/// another daemon than the one that queued it: the time until the last answer.
async fn queued_runs(daemons: &[Served], runs: usize) -> (Duration, Duration) {
    let started = Instant::now();
    let per_client = runs.div_ceil(CLIENTS);
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let count = per_client.min(runs.saturating_sub(client * per_client));
        let queue_on = &daemons[client % daemons.len()];
        let mut sender = Client::connect(queue_on).await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let (status, answer) = sender
                    .send(
                        "POST",
                        "/v1/runs",
                        r#"{"node":"bench/noop","mode":"queued"}"#,
                    )
                    .await;
                assert_eq!(status, 202, "queueing a run: {answer}");
                ids.push(answer["run_id"].as_str().expect("a run id").to_string());
            }
            ids
        }));
    }
    let mut queued = Vec::new();
    for task in tasks {
        queued.push(task.await.expect("a client"));
    }
    let all_queued = started.elapsed();
    let mut tasks = Vec::new();
    for (client, ids) in queued.into_iter().enumerate() {
        let read_on = &daemons[(client + 1) % daemons.len()];
        let mut reader = Client::connect(read_on).await;
        tasks.push(tokio::spawn(async move {
            for id in ids {
                loop {
                    let (status, answer) = reader
                        .send("GET", &format!("/v1/runs/{id}/result?wait=30"), "")
                        .await;
                    if status == 202 {
                        continue;
                    }
                    assert_eq!(status, 200, "the answer of {id}: {answer}");
                    break;
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a reader");
    }
    (all_queued, started.elapsed())
}

/// The queue alone in PostgreSQL: `runs` queued by `CLIENTS` tasks, then claimed and answered by
/// `workers` tasks on two pools (two daemons). Rates per second: queueing, claim-and-answer.
async fn queue_rates(url: &str, runs: usize, workers: usize) -> (f64, f64) {
    let connect = || async {
        Database::connect(url, &DatabaseOptions::default())
            .await
            .expect("connect")
    };
    let pools = [connect().await, connect().await];
    let bounds = QueueBounds {
        per_caller: 10_000_000,
        total: 10_000_000,
    };
    let started = Instant::now();
    let per_client = runs.div_ceil(CLIENTS);
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let queue = RunQueue::new(&pools[client % 2], "bench");
        let count = per_client.min(runs.saturating_sub(client * per_client));
        tasks.push(tokio::spawn(async move {
            for index in 0..count {
                let id = format!("bench-{client}-{index}");
                let caller = format!("caller-{client}");
                queue
                    .enqueue(
                        &NewRun {
                            id: &id,
                            caller: &caller,
                            idempotency_key: None,
                            request_sha256: "",
                            package: "bench",
                            request: "{}",
                        },
                        bounds,
                    )
                    .await
                    .expect("queue a run");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a client");
    }
    let queueing = runs as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let queue = RunQueue::new(&pools[worker % 2], "bench");
        tasks.push(tokio::spawn(async move {
            let packages = vec!["bench".to_string()];
            while let Some(claimed) = queue
                .claim(&packages, Duration::from_secs(30))
                .await
                .expect("claim")
            {
                assert!(
                    queue
                        .finish(&claimed, 200, "{}", "{}")
                        .await
                        .expect("finish")
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("a worker");
    }
    (queueing, runs as f64 / started.elapsed().as_secs_f64())
}

pub fn cluster(scale: Scale, bytes: &[u8], tables: &mut Vec<Table>) {
    let Some(server) = shared_postgres() else {
        eprintln!("suite: the cluster is not measured: PostgreSQL is not available here");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let runs = scale.size(2000, 8) as usize;
    let mut table = Table::new(
        "8. The cluster: queued runs through 1, 2 and 3 daemons on one PostgreSQL",
        &format!(
            "{runs} queued runs of the no-op node (`\"mode\": \"queued\"`), sent by {CLIENTS} \
             kept-alive HTTPS connections spread over the daemons; every answer is then read \
             (`GET /v1/runs/{{id}}/result?wait=30`) on another daemon than the one that queued \
             it. Each daemon has `host.concurrency = 8` workers. The daemons, PostgreSQL 15 and \
             the client all share this machine's cores, so more daemons add no CPU: read the \
             rows as what the queue costs and whether it lets daemons share the work. The last \
             rows are the queue alone in PostgreSQL (no daemon, no HTTP): its ceiling on this \
             machine. What bounds a larger cluster is in [cluster.md](cluster.md#how-far-it-scales)."
        ),
        &[
            "configuration",
            "queued per second",
            "answered per second",
            "time",
        ],
    );
    for count in 1..=3 {
        let url = runtime
            .block_on(server.fresh_database())
            .expect("a fresh database");
        let dirs: Vec<tempfile::TempDir> = (0..count)
            .map(|_| {
                let dir = tempfile::tempdir().expect("a directory");
                write_fixture(dir.path(), bytes);
                dir
            })
            .collect();
        let daemons: Vec<Served> = dirs.iter().map(|dir| start(dir.path(), &url)).collect();
        let (queued, answered) = runtime.block_on(queued_runs(&daemons, runs));
        table.row(vec![
            format!("{count} daemon{}", if count == 1 { "" } else { "s" }),
            format!("{:.0}", runs as f64 / queued.as_secs_f64()),
            format!("{:.0}", runs as f64 / answered.as_secs_f64()),
            super::human(answered),
        ]);
        drop(daemons);
    }
    for workers in [2, 16] {
        let url = runtime
            .block_on(server.fresh_database())
            .expect("a fresh database");
        let (queueing, claiming) = runtime.block_on(queue_rates(&url, runs, workers));
        table.row(vec![
            format!("the queue alone, {workers} workers on 2 pools"),
            format!("{queueing:.0}"),
            format!("{claiming:.0}"),
            "-".into(),
        ]);
    }
    tables.push(table);
}
