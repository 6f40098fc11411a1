//! A generation: the nodes one version of the manifest loaded, compiled and linked, with the
//! names callers reach them by. A reload builds a new generation beside the serving one and
//! swaps it in at once; a run keeps the `Arc<LiveNode>` it started on, so it finishes on its
//! own generation whatever is swapped in meanwhile.

use crate::admission::Admission;
use crate::loader::Verified;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::watch;
use warden_host::allowlist::AllowedHosts;
use warden_host::{PreparedNode, Runtime, WasmSecurityConfig};

/// One loaded package, ready to run.
pub struct LiveNode {
    pub verified: Verified,
    pub prepared: PreparedNode,
    pub config: WasmSecurityConfig,
    pub admission: Admission,
    /// The generation that loaded it (a node unchanged by a reload keeps its first one).
    pub generation: u64,
    /// Set (with the reason) when the node is stopped: its runs end at once.
    stop: watch::Sender<Option<String>>,
    /// Set when a reload replaced it: runs in flight finish, requests still waiting go to
    /// its successor.
    retired: watch::Sender<bool>,
}

impl LiveNode {
    /// What makes two loads the same node: the same package under the same grant and limits.
    /// A reload keeps such a node as it is, its runs and queue included.
    fn identity(verified: &Verified) -> String {
        let entry = &verified.entry;
        format!(
            "{}|{:?}|{}|{:?}|{:?}|{}|{}|{}",
            verified.package_sha256,
            // Where it came from decides which syncs can block it.
            serde_json::to_string(&verified.origin).unwrap_or_default(),
            verified.capabilities.bits(),
            verified.allowed_hosts,
            entry.limits,
            entry.concurrency,
            entry.queue,
            entry.allow_wasi
        )
    }

    pub fn name(&self) -> &str {
        &self.verified.entry.name
    }

    /// Stops the node's runs, now and to come.
    pub fn stop(&self, reason: &str) {
        self.stop.send_if_modified(|stopped| {
            if stopped.is_none() {
                *stopped = Some(reason.to_string());
                true
            } else {
                false
            }
        });
    }

    /// Marks the node replaced by a newer generation's.
    pub fn retire(&self) {
        self.retired.send_replace(true);
    }

    pub fn is_retired(&self) -> bool {
        *self.retired.borrow()
    }

    /// Completes once the node is retired.
    pub async fn until_retired(&self) {
        let mut receiver = self.retired.subscribe();
        let _ = receiver.wait_for(|retired| *retired).await;
    }

    /// Whether `newer` grants less than this node: a capability or a host this one had.
    pub fn narrowed_by(&self, newer: &LiveNode) -> bool {
        !newer.config.capabilities.contains(self.config.capabilities)
            || (self.config.allow_wasi && !newer.config.allow_wasi)
            || self
                .verified
                .allowed_hosts
                .iter()
                .any(|host| !newer.verified.allowed_hosts.contains(host))
    }

    pub fn stopped(&self) -> Option<String> {
        self.stop.borrow().clone()
    }

    /// Completes with the reason once the node is stopped.
    pub async fn until_stopped(&self) -> String {
        let mut receiver = self.stop.subscribe();
        loop {
            if let Some(reason) = receiver.borrow_and_update().clone() {
                return reason;
            }
            if receiver.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// The node's description as `GET /v1/nodes` gives it.
    pub fn describe(&self) -> serde_json::Value {
        let verified = &self.verified;
        let limits = &self.config.limits;
        let nodes: Vec<serde_json::Value> = self
            .prepared
            .nodes()
            .iter()
            .map(|node| {
                let mut json = node.to_json();
                json["id"] = serde_json::json!(format!("{}/{}", verified.entry.name, node.name));
                json
            })
            .collect();
        serde_json::json!({
            "package": verified.entry.name,
            "version": verified.version,
            "version_requirement": verified.entry.version.to_string(),
            "package_sha256": verified.package_sha256,
            "component_sha256": verified.component_sha256,
            "publisher": verified.publisher,
            "signers": verified.signers,
            "origin": verified.origin,
            "grant": self.config.capabilities.names(),
            "allowed_hosts": verified.allowed_hosts,
            "limits": {
                "preset": verified.entry.preset.name(),
                "memory_bytes": limits.memory_bytes,
                "fuel": limits.fuel,
                "timeout_ms": limits.timeout.as_millis() as u64,
                "wasm_stack_bytes": limits.wasm_stack_bytes,
                "max_instances": limits.max_instances,
                "max_memories": limits.max_memories,
                "max_tables": limits.max_tables,
                "max_table_elements": limits.max_table_elements,
            },
            "concurrency": self.admission.capacity(),
            "queue": self.admission.queue(),
            "in_use": self.admission.in_use(),
            "waiting": self.admission.waiting(),
            "generation": self.generation,
            "nodes": nodes,
        })
    }
}

/// The nodes serving, and the names that reach them.
pub struct Generation {
    pub number: u64,
    pub manifest_sha256: String,
    pub nodes: Vec<Arc<LiveNode>>,
    /// `package/node`, and `node` alone where only one package provides it.
    routes: HashMap<String, (usize, String)>,
    /// Node names more than one package provides: they need `package/node`.
    ambiguous: BTreeMap<String, Vec<String>>,
    /// Manifest nodes not serving, and why (blocked by their registry).
    pub missing: Vec<(String, String)>,
}

/// Why a name does not reach a node.
#[derive(Debug, PartialEq, Eq)]
pub enum Unresolved {
    Unknown {
        name: String,
        known: Vec<String>,
    },
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
}

impl Generation {
    pub fn empty() -> Self {
        Generation {
            number: 0,
            manifest_sha256: String::new(),
            nodes: Vec::new(),
            routes: HashMap::new(),
            ambiguous: BTreeMap::new(),
            missing: Vec::new(),
        }
    }

    /// The same generation, with `missing` nodes noted.
    pub fn missing(mut self, missing: Vec<(String, String)>) -> Self {
        self.missing = missing;
        self
    }

    /// A generation of `nodes`.
    pub fn new(number: u64, manifest_sha256: String, nodes: Vec<Arc<LiveNode>>) -> Self {
        let mut routes = HashMap::new();
        let mut by_node: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (index, live) in nodes.iter().enumerate() {
            // A package whose component provides one node is also reached by its own name.
            let provided = live.prepared.nodes();
            if provided.len() == 1 {
                by_node
                    .entry(live.name().to_string())
                    .or_default()
                    .push((index, provided[0].name.clone()));
            }
            for node in provided {
                routes.insert(
                    format!("{}/{}", live.name(), node.name),
                    (index, node.name.clone()),
                );
                by_node
                    .entry(node.name.clone())
                    .or_default()
                    .push((index, node.name.clone()));
            }
        }
        let mut ambiguous = BTreeMap::new();
        for (name, mut targets) in by_node {
            targets.dedup();
            if routes.contains_key(&name) {
                continue;
            }
            if targets.len() == 1 {
                routes.insert(name, targets.remove(0));
            } else {
                let candidates = targets
                    .iter()
                    .map(|(index, node)| format!("{}/{node}", nodes[*index].name()))
                    .collect();
                ambiguous.insert(name, candidates);
            }
        }
        Generation {
            number,
            manifest_sha256,
            nodes,
            routes,
            ambiguous,
            missing: Vec::new(),
        }
    }

    /// The node `name` reaches, and the node of its component to run.
    pub fn resolve(&self, name: &str) -> Result<(Arc<LiveNode>, String), Unresolved> {
        if let Some((index, node)) = self.routes.get(name) {
            return Ok((self.nodes[*index].clone(), node.clone()));
        }
        if let Some(candidates) = self.ambiguous.get(name) {
            return Err(Unresolved::Ambiguous {
                name: name.to_string(),
                candidates: candidates.clone(),
            });
        }
        let mut known: Vec<String> = self.routes.keys().cloned().collect();
        known.sort();
        Err(Unresolved::Unknown {
            name: name.to_string(),
            known,
        })
    }

    pub fn package(&self, name: &str) -> Option<&Arc<LiveNode>> {
        self.nodes.iter().find(|live| live.name() == name)
    }
}

/// Compiles and links each verified package for its grant, reusing the live node of
/// `previous` where nothing about it changed. Returns every problem when any node fails.
pub async fn build(
    runtime: &Runtime,
    verified: Vec<Verified>,
    previous: &Generation,
    number: u64,
) -> Result<Vec<Arc<LiveNode>>, Vec<String>> {
    let mut nodes = Vec::new();
    let mut problems = Vec::new();
    for verified in verified {
        let identity = LiveNode::identity(&verified);
        if let Some(kept) = previous
            .nodes
            .iter()
            .find(|live| LiveNode::identity(&live.verified) == identity && live.stopped().is_none())
        {
            nodes.push(kept.clone());
            continue;
        }
        let entry = &verified.entry;
        let allowed_hosts = match AllowedHosts::parse(&verified.allowed_hosts) {
            Ok(hosts) => hosts,
            Err(error) => {
                problems.push(format!("`{}`: allowed hosts: {error}", entry.name));
                continue;
            }
        };
        let config = WasmSecurityConfig {
            limits: entry.limits.clone(),
            capabilities: verified.capabilities,
            allow_wasi: entry.allow_wasi,
            allow_wasi_network: false,
            allowed_hosts,
        };
        match runtime.prepare(&verified.component, &config).await {
            Ok(prepared) => {
                let (stop, _) = watch::channel(None);
                nodes.push(Arc::new(LiveNode {
                    admission: Admission::new(entry.concurrency, entry.queue),
                    verified,
                    prepared,
                    config,
                    generation: number,
                    stop,
                    retired: watch::channel(false).0,
                }));
            }
            Err(error) => problems.push(format!("`{}`@{}: {error}", entry.name, verified.version)),
        }
    }
    match problems.is_empty() {
        true => Ok(nodes),
        false => Err(problems),
    }
}
