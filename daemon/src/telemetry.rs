//! Prometheus metrics: recorded through the `metrics` facade, rendered by
//! `metrics-exporter-prometheus` (its own listener and push gateway left out, so no second
//! HTTP stack and no aws-lc), and served on the daemon's separate metrics listener.
//!
//! The names, in one place so docs/daemon.md and the tests can be checked against them:

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Runs finished, by `node` and `outcome`: `ok`, `bad_input`, `limit`, `node_failed`,
/// `node_trapped`, `invalid_output`, `host_error`, `stopped`.
pub const RUNS: &str = "warden_runs_total";
/// Run durations in seconds, by `node`: a histogram.
pub const RUN_DURATION: &str = "warden_run_duration_seconds";
/// Capability denials, by `capability`.
pub const DENIALS: &str = "warden_denials_total";
/// Runs stopped by a limit, by `limit`.
pub const LIMIT_HITS: &str = "warden_limit_hits_total";
/// Fuel burned, by `node`.
pub const FUEL: &str = "warden_fuel_consumed_total";
/// Runs holding an instance now, by `node`.
pub const INSTANCES_IN_USE: &str = "warden_instances_in_use";
/// Requests waiting for a slot now, by `node`.
pub const QUEUE_DEPTH: &str = "warden_queue_depth";
/// Requests turned away with 429, by `node` (`*` for the host-wide queue).
pub const REJECTED: &str = "warden_admission_rejected_total";
/// HTTP requests answered, by `route` (the matched pattern) and `status`.
pub const HTTP_REQUESTS: &str = "warden_http_requests_total";
/// Reloads, by `result` (`applied`, `refused`).
pub const RELOADS: &str = "warden_reloads_total";
/// The generation serving now.
pub const GENERATION: &str = "warden_generation";
/// Compiled-code cache events, by `event` (`hit`, `miss`, `rejected`, `stored`).
pub const CODE_CACHE: &str = "warden_code_cache_total";

/// 1 while the cluster's database answers the daemon's probes, 0 when it does not (only in a
/// cluster).
pub const CLUSTER_DATABASE_UP: &str = "warden_cluster_database_up";

/// Queued runs waiting to be claimed, in the whole cluster (sampled by each daemon every few
/// seconds: every daemon reports the same value, so aggregate with `max`).
pub const CLUSTER_QUEUE_DEPTH: &str = "warden_cluster_queue_depth";
/// Queued runs this daemon claimed, by `delivery` (`first`, or `redelivered`: taken again
/// after the lease of a worker that died or stalled ran out).
pub const CLUSTER_CLAIMS: &str = "warden_cluster_claims_total";
/// Runs this daemon stopped because its lease on them was lost (the database did not renew it
/// in time): another worker runs them again.
pub const CLUSTER_LEASES_LOST: &str = "warden_cluster_leases_lost_total";
/// Records of runs answered at once that this daemon did not share with the cluster (too many
/// writes to the database in flight, or the database failed): only this daemon has them.
pub const CLUSTER_RECORDS_UNSHARED: &str = "warden_cluster_records_unshared_total";
/// Packages this daemon installed, by `from`: `blobs` (the cluster's object storage, verified
/// as a download is) or `registry` (downloaded, then stored for the other daemons).
pub const CLUSTER_PACKAGES: &str = "warden_cluster_packages_total";
/// Failures of the cluster's object storage, by `operation` (`get`, `put`) and `kind`
/// (`unavailable`, `corrupt`): the registry serves meanwhile.
pub const CLUSTER_BLOB_FAILURES: &str = "warden_cluster_blob_failures_total";

/// Every metric the daemon exports.
pub const ALL: [&str; 22] = [
    RUNS,
    RUN_DURATION,
    DENIALS,
    LIMIT_HITS,
    FUEL,
    INSTANCES_IN_USE,
    QUEUE_DEPTH,
    REJECTED,
    HTTP_REQUESTS,
    RELOADS,
    GENERATION,
    CODE_CACHE,
    AUDIT_FAILURES,
    AUDIT_CHAIN_BROKEN,
    AUTH_FAILURES,
    CLUSTER_DATABASE_UP,
    CLUSTER_QUEUE_DEPTH,
    CLUSTER_CLAIMS,
    CLUSTER_LEASES_LOST,
    CLUSTER_RECORDS_UNSHARED,
    CLUSTER_PACKAGES,
    CLUSTER_BLOB_FAILURES,
];

/// Requests refused for their credential, by `kind` (missing, expired, bad_signature, …).
pub const AUTH_FAILURES: &str = "warden_auth_failures_total";

/// Audit records that could not be written.
pub const AUDIT_FAILURES: &str = "warden_audit_write_failures_total";
/// 1 when the daemon found the cluster's audit chain broken at its start (records changed or
/// removed), 0 when it verified (only in a cluster).
pub const AUDIT_CHAIN_BROKEN: &str = "warden_audit_chain_broken";

/// Buckets of the run-duration histogram, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use; `None` when another recorder
/// was installed first (an embedder's), in which case the metrics go there.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(RUN_DURATION.into()), &DURATION_BUCKETS)
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// The text Prometheus scrapes.
pub fn render() -> String {
    match handle() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => "# metrics go to the process's own recorder\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the daemon's metrics that `text` uses (histogram series by their family).
    fn metrics_used(text: &str) -> Vec<String> {
        let mut used = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("warden_") {
            let name: String = rest[start..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            rest = &rest[start + name.len()..];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_string();
            used.push(family);
        }
        used
    }

    #[test]
    fn the_dashboard_and_the_autoscaler_use_metrics_that_exist() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for file in [
            "deploy/compose/grafana/dashboards/warden.json",
            "deploy/kubernetes/hpa.yaml",
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let used = metrics_used(&text);
            assert!(!used.is_empty(), "{file} uses no metric");
            for name in used {
                assert!(
                    ALL.contains(&name.as_str()),
                    "{file}: {name} is not a metric"
                );
            }
        }
    }
}
