//! An installed node and its grant: what its package requests, what the operator approved, and
//! what is pending. Approvals name single capabilities and presets this host knows, so an
//! approval is always exactly what the operator read.

use super::error::InstallError;
use serde::{Deserialize, Serialize};
use warden_host::Capabilities;

fn default_preset() -> String {
    "default".into()
}

/// An installed node and its grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    /// The identity of the registry it came from (`protocol::registry_id`).
    pub registry: String,
    /// Where that registry was reached for this install.
    pub registry_url: String,
    pub publisher: String,
    /// The publisher's keys this host accepts for updates: its keys when first installed, and
    /// every key the registry's log shows signed in by one of them since.
    pub publisher_keys: Vec<String>,
    pub package_sha256: String,
    /// What the signed manifest requests.
    pub requested: Vec<String>,
    pub requested_hosts: Vec<String>,
    /// The limits preset the package requests; it runs under it once approved.
    pub limits: String,
    /// What the operator approved (it may cover more than this version requests).
    pub approved: Vec<String>,
    pub approved_hosts: Vec<String>,
    /// The loosest limits preset the operator approved.
    #[serde(default = "default_preset")]
    pub approved_limits: String,
    /// False while the version requests something not approved.
    pub enabled: bool,
    /// Why the registry's newest signed state forbids running it (a revoked signing key, or
    /// the version no longer listed); set by `sync`, cleared by an install that passes.
    #[serde(default)]
    pub blocked: Option<String>,
}

impl Installed {
    /// The capabilities requested and not approved.
    pub fn pending(&self) -> Vec<String> {
        self.requested
            .iter()
            .filter(|name| !self.approved.contains(name))
            .cloned()
            .collect()
    }

    pub fn pending_hosts(&self) -> Vec<String> {
        self.requested_hosts
            .iter()
            .filter(|host| !self.approved_hosts.contains(host))
            .cloned()
            .collect()
    }

    /// The requested preset, when it is looser than the approved one.
    pub fn pending_limits(&self) -> Option<String> {
        let looser = match (looseness(&self.limits), looseness(&self.approved_limits)) {
            (Ok(requested), Ok(approved)) => requested > approved,
            _ => true,
        };
        looser.then(|| self.limits.clone())
    }

    /// The grant: what was approved intersected with what the package requests.
    pub fn grant(&self) -> Result<Capabilities, InstallError> {
        let names: Vec<&str> = self
            .requested
            .iter()
            .filter(|name| self.approved.contains(name))
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            return Ok(Capabilities::empty());
        }
        names
            .join(",")
            .parse::<Capabilities>()
            .map_err(|error| InstallError::State(error.to_string()))
    }

    pub fn granted_hosts(&self) -> Vec<String> {
        self.requested_hosts
            .iter()
            .filter(|host| self.approved_hosts.contains(host))
            .cloned()
            .collect()
    }

    pub(super) fn refresh(&mut self) {
        self.enabled = self.pending().is_empty()
            && self.pending_hosts().is_empty()
            && self.pending_limits().is_none();
    }
}

/// Refuses capability names this host does not know, so a typo cannot approve nothing.
/// Approvals name single capabilities, as manifests do; sets such as `all` are refused, so an
/// approval is always exactly what the operator read.
pub(super) fn check_names(names: &[String]) -> Result<(), InstallError> {
    for name in names {
        if !warden_host::CAPABILITIES
            .iter()
            .any(|info| info.name == name)
        {
            return Err(InstallError::Usage(format!(
                "`{name}` is not a capability name; approve capabilities one by one by the names `warden capabilities` lists"
            )));
        }
    }
    Ok(())
}

/// How loose a limits preset is: approving one approves every tighter one.
pub(super) fn looseness(preset: &str) -> Result<u8, InstallError> {
    match preset.parse::<warden_host::Preset>() {
        Ok(warden_host::Preset::Restrictive) => Ok(0),
        Ok(warden_host::Preset::Default) => Ok(1),
        Ok(warden_host::Preset::Permissive) => Ok(2),
        Err(error) => Err(InstallError::Usage(error.to_string())),
    }
}
