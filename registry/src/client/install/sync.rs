//! Fetching a registry's newest signed state (roots, index, and the log entries the host has
//! not verified yet, a page at a time), verifying it against what the host has seen, and
//! recording it; `sync`, the kill switch, then blocks what that state no longer allows.

use super::error::{InstallError, Refusal};
use super::installed::Installed;
use super::state::{InstallState, RegistryRecord};
use super::verify::{Accepted, accept_index, check_log, valid_signer};
use crate::client::Client;
use crate::protocol::{self, Index, LogEntry, Replayed, Signed, SignedRoot, sha256_hex};

/// Fetches the log entries after `from` (whose last hash is `head`) up to the index's signed
/// checkpoint, a page at a time, each page chaining from the one before. Entries the host
/// verified before are not fetched again.
pub async fn fetch_log(
    client: &Client,
    from: u64,
    head: &str,
    index: &Index,
) -> Result<Vec<LogEntry>, InstallError> {
    let mut fetched = Vec::new();
    let mut next = from;
    let mut previous = head.to_string();
    while next < index.log_size {
        let want = (index.log_size - next).min(protocol::MAX_LOG_PAGE_ENTRIES);
        let mut page: Vec<LogEntry> = client
            .get_json_limited(
                &format!("v1/log?from={next}&limit={want}"),
                2 * protocol::MAX_LOG_PAGE_BYTES,
            )
            .await?;
        if page.is_empty() {
            return Err(Refusal::LogEndsEarly {
                after: next,
                signed: index.log_size,
            }
            .into());
        }
        // Entries past the checkpoint are not signed yet; they are fetched again later.
        page.truncate(want as usize);
        previous = protocol::verify_page(&page, next, &previous)
            .map_err(|source| Refusal::LogDoesNotExtend { source })?;
        check_page_fullness(&page, next, want, index.log_size)?;
        next += page.len() as u64;
        fetched.extend(page);
    }
    if previous != index.log_head {
        return Err(if from > 0 {
            Refusal::LogRewrittenPastCheckpoint
        } else {
            Refusal::LogOffCheckpoint
        }
        .into());
    }
    Ok(fetched)
}

/// Refuses a page with fewer entries than asked that is not cut at the page's byte bound (a
/// registry fills every page to `limit` entries or `MAX_LOG_PAGE_BYTES`; half of that is
/// required, against differences in how the bytes are counted). Otherwise a server (a mirror
/// needs no key for it) could answer one entry at a time, each answer taking up to the
/// client's timeout, and stretch a sync over days while it holds the host's state.
fn check_page_fullness(
    page: &[LogEntry],
    from: u64,
    want: u64,
    log_size: u64,
) -> Result<(), InstallError> {
    if page.len() as u64 >= want {
        return Ok(());
    }
    let bytes: usize = page
        .iter()
        .map(|entry| serde_json::to_vec(entry).map_or(0, |json| json.len() + 1))
        .sum();
    if bytes < protocol::MAX_LOG_PAGE_BYTES / 2 {
        return Err(Refusal::ShortPage {
            from,
            held: page.len(),
            want,
            bytes,
            log_size,
            bound: protocol::MAX_LOG_PAGE_BYTES,
        }
        .into());
    }
    Ok(())
}

/// What `sync` did.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The registry's identity, and the URL it was reached at.
    pub registry: String,
    pub url: String,
    /// The nodes this sync blocked.
    pub blocked: Vec<Installed>,
    /// The nodes of this registry blocked now, by this sync or before.
    pub blocked_in_all: usize,
    /// How many log entries were fetched (those verified before are not fetched again).
    pub log_entries_fetched: u64,
}

/// Fetches and verifies the registry's newest signed state (roots, index, log, with every
/// check `install` makes) and blocks each node installed from it whose signing key has since
/// been revoked for its publication time, or whose version the index no longer lists as
/// installed. This is the kill switch: run it on a schedule shorter than the index lifetime.
/// Returns the nodes it blocked.
pub async fn sync(
    client: &Client,
    host: &InstallState,
    now: u64,
) -> Result<Vec<Installed>, InstallError> {
    sync_report(client, host, now)
        .await
        .map(|report| report.blocked)
}

/// `sync`, reporting what it did. It covers every node installed from this registry's
/// identity, whatever URL it was installed from.
pub async fn sync_report(
    client: &Client,
    host: &InstallState,
    now: u64,
) -> Result<SyncReport, InstallError> {
    let verified = fetch_verified(client, host, None, now).await?;
    let index = &verified.index;
    let mut blocked = Vec::new();
    let mut blocked_in_all = 0;
    for mut record in host.all_installed()? {
        if record.registry != verified.id {
            continue;
        }
        if record.blocked.is_some() {
            blocked_in_all += 1;
            continue;
        }
        let reason = match index.entry(&record.name, &record.version) {
            Some(entry) if entry.package_sha256 != record.package_sha256 => {
                Some("the registry's index lists other bytes for this version".to_string())
            }
            Some(entry)
                if !valid_signer(
                    // An unreadable file has no valid signer: it is blocked, and sync goes on.
                    &host.installed_signers(&record).unwrap_or_default(),
                    entry,
                    index,
                ) =>
            {
                Some(format!(
                    "its installed file carries no signature by a key of `{}` valid at its publication (revoked, or the file is unreadable); install a version signed by a current key",
                    entry.publisher
                ))
            }
            Some(_) => None,
            None => Some("the registry's index no longer lists this version".to_string()),
        };
        if let Some(reason) = reason {
            record.blocked = Some(reason);
            host.update_installed(&record)?;
            blocked_in_all += 1;
            blocked.push(record);
        }
    }
    Ok(SyncReport {
        registry: verified.id,
        url: client.base().to_string(),
        blocked,
        blocked_in_all,
        log_entries_fetched: verified.fetched,
    })
}

/// A registry's newest state, verified.
pub(super) struct Verified {
    pub(super) id: String,
    pub(super) index: Index,
    /// The whole log, as kept and as fetched now.
    pub(super) entries: Vec<LogEntry>,
    pub(super) replayed: Replayed,
    pub(super) fetched: u64,
}

/// Fetches roots, index and the log entries this host has not verified yet, verifies them
/// against what the host has seen, and records the accepted index and log (so a later
/// rollback is refused even if what follows fails).
pub(super) async fn fetch_verified(
    client: &Client,
    host: &InstallState,
    registry_key: Option<&str>,
    now: u64,
) -> Result<Verified, InstallError> {
    let url = client.base().to_string();
    let roots: Vec<SignedRoot> = client.get_json("v1/roots").await?;
    let signed: Signed = client
        .get_json_limited("v1/index", protocol::MAX_INDEX_BYTES)
        .await?;
    let Accepted {
        id,
        index,
        root,
        known,
    } = accept_index(host, &url, &signed, &roots, registry_key, now)?;
    let mut entries = host.log_entries(&id)?;
    let (from, head) = match &known {
        Some(known) => (known.log_size, known.log_head.clone()),
        None => (0, protocol::LOG_ROOT.to_string()),
    };
    if entries.len() as u64 != from {
        return Err(InstallError::State(format!(
            "the kept log of registry {id} holds {} entries, its record says {from}",
            entries.len()
        )));
    }
    let new_entries = fetch_log(client, from, &head, &index).await?;
    let fetched = new_entries.len() as u64;
    entries.extend_from_slice(&new_entries);
    let replayed = check_log(&entries, &index, known.as_ref(), &id)?;
    host.record_verified(
        &RegistryRecord {
            id: id.clone(),
            url,
            root,
            index_version: index.version,
            index_sha256: sha256_hex(signed.signed.as_bytes()),
            log_size: index.log_size,
            log_head: index.log_head.clone(),
        },
        &new_entries,
    )?;
    Ok(Verified {
        id,
        index,
        entries,
        replayed,
        fetched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Event;

    #[test]
    fn a_short_log_page_must_be_cut_at_the_byte_bound() {
        let yank = |sequence: u64, name: String| LogEntry {
            sequence,
            time: 0,
            previous: String::new(),
            event: Event::Yank {
                name,
                version: "1.0.0".into(),
            },
        };
        let small = vec![yank(5, "a".into())];
        assert!(
            check_page_fullness(&small, 5, 1, 6).is_ok(),
            "all that was asked"
        );
        let result = check_page_fullness(&small, 5, 2, 7);
        assert!(
            matches!(
                &result,
                Err(InstallError::Refused(Refusal::ShortPage {
                    from: 5,
                    held: 1,
                    want: 2,
                    log_size: 7,
                    ..
                }))
            ),
            "{result:?}"
        );
        // An honest page cut at the byte bound: its entries hold that much JSON.
        let big = "b".repeat(protocol::MAX_LOG_PAGE_BYTES / 2);
        assert!(check_page_fullness(&[yank(5, big)], 5, 1000, 2000).is_ok());
    }
}
