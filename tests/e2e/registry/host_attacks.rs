//! Attacks on the host side's protections (registry identity, publisher lineage, the paged
//! log), each by a malicious registry, a mirror, or someone holding a publisher's secrets.

use super::host_log::{Crafter, Shared, chain, install_forged, serve_forged};
use super::*;

/// Installs `node` with `--accept-publisher-change` unset.
fn update(registry: &Registry, host: &Host, token: &str, node: &str) -> Installed {
    install(registry, host, token, node).unwrap_or_else(|error| panic!("{node}: {error}"))
}

#[test]
fn a_key_signed_in_after_its_signers_back_dated_revocation_is_void_everywhere() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let (host, control) = (host(), host());
    update(&registry, &host, &acme.token, "text-transform");
    update(&registry, &control, &acme.token, "text-transform");

    // A thief holding alice's key and a token signs in a key of their own and publishes.
    let thief = package::generate_key().unwrap();
    let thief_hex = package::public_key_hex(&thief);
    registry
        .add_key(&acme.token, "acme", &thief, Some(&acme.key))
        .unwrap();
    let evil = pack_with(&plain(), "text-transform", "1.1.0", "acme", &[], &thief);
    registry.publish(&acme.token, evil).unwrap();
    // Before anyone notices, the rotation is in the lineage: an update takes it (the control:
    // what follows is refused because of the revocation, not the rotation).
    assert_eq!(
        update(&registry, &control, &acme.token, "text-transform").version,
        "1.1.0"
    );

    // The theft is found: an admin revokes alice's key back to before the thief used it. The
    // rotation was signed by the key after that time, so it is void; the thief's key itself
    // was left (forgotten, or not yet known to be the thief's).
    let revoked = registry.post(
        &registry.owner,
        &format!(
            "v1/publishers/acme/keys/{}/revoke",
            package::public_key_hex(&acme.key)
        ),
        json!({ "revoked_at": 1 }),
    );
    assert!(revoked.is_ok(), "{revoked:?}");
    // Not even a publisher change an operator could accept: the thief's key is void.
    refused(
        install(&registry, &host, &acme.token, "text-transform@1.1.0"),
        |refusal| matches!(refusal, Refusal::NoValidSigner { version, .. } if version == "1.1.0"),
    );
    assert_eq!(
        host.state
            .installed("text-transform")
            .unwrap()
            .unwrap()
            .version,
        "1.0.0"
    );

    // The key signed in by a key after its revocation time is void from its start in the
    // signed index (every replay derives it), so hosts refuse what it signed even on a first
    // install, and `sync` blocks it where it was installed before the theft was found.
    let signed: Signed = block_on(registry.client(&acme.token).get_json("v1/index")).unwrap();
    let index: Index = serde_json::from_str(&signed.signed).unwrap();
    let voided = index.key(&thief_hex).unwrap();
    assert_eq!(voided.revoked_at, Some(voided.added_at));
    refused(
        install(
            &registry,
            &super::host(),
            &acme.token,
            "text-transform@1.1.0",
        ),
        |refusal| matches!(refusal, Refusal::NoValidSigner { version, .. } if version == "1.1.0"),
    );
    let blocked = block_on(install::sync(
        &registry.client(&acme.token),
        &control.state,
        now(),
    ))
    .unwrap();
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert!(
        control.state.load("text-transform").is_err(),
        "the thief's version still runs"
    );
}

#[test]
fn a_mirror_that_dribbles_the_log_in_short_pages_is_refused() {
    let forged: Shared = Arc::default();
    let (_dir, url, ca, _runtime) = serve_forged(forged.clone());
    let mut crafter = Crafter::new();
    let key = package::public_key_hex(&crafter.registry);
    let log = chain(vec![
        (100, crafter.key_added()),
        (150, crafter.published("1.0.0")),
        (160, crafter.published("1.1.0")),
        (170, crafter.published("1.2.0")),
    ]);
    crafter.serve(&forged, log);
    // One small entry per answer, each of which may take up to the client's timeout: without a
    // check the host makes one request per entry of the history, holding its state meanwhile.
    forged.lock().unwrap().page_cap = Some(1);
    let host = host();
    refused(
        install_forged(&url, &ca, &host, &key, "text-transform@1.0.0"),
        |refusal| {
            matches!(
                refusal,
                Refusal::ShortPage {
                    held: 1,
                    want: 4,
                    ..
                }
            )
        },
    );
    assert_eq!(forged.lock().unwrap().asked, vec![0], "one page, then stop");
    assert!(host.state.registries().unwrap().is_empty());
    // The same log served in whole pages installs.
    let mut served = forged.lock().unwrap();
    served.page_cap = None;
    served.asked.clear();
    drop(served);
    assert!(install_forged(&url, &ca, &host, &key, "text-transform@1.0.0").is_ok());
    assert_eq!(forged.lock().unwrap().asked, vec![0]);
}

#[test]
fn log_pages_past_the_checkpoint_or_short_of_it() {
    let forged: Shared = Arc::default();
    let (_dir, url, ca, _runtime) = serve_forged(forged.clone());
    let mut crafter = Crafter::new();
    let key = package::public_key_hex(&crafter.registry);
    let whole = chain(vec![
        (100, crafter.key_added()),
        (150, crafter.published("1.0.0")),
        (160, crafter.published("1.1.0")),
        (170, crafter.published("1.2.0")),
    ]);
    // The signed index stops at three entries; the server's log ends at two.
    crafter.serve(&forged, whole[..3].to_vec());
    forged.lock().unwrap().log.truncate(2);
    let host = host();
    refused(
        install_forged(&url, &ca, &host, &key, "text-transform@1.0.0"),
        |refusal| {
            matches!(
                refusal,
                Refusal::ShortPage {
                    held: 2,
                    want: 3,
                    ..
                }
            )
        },
    );
    assert!(host.state.registries().unwrap().is_empty());
    // The server answers more than asked (an entry past the signed checkpoint, which it may
    // well hold): the host keeps exactly what the index signs, and fetches the rest later.
    forged.lock().unwrap().log = whole.clone();
    install_forged(&url, &ca, &host, &key, "text-transform@1.0.0").unwrap();
    assert_eq!(host.state.log_entries(&key).unwrap(), whole[..3].to_vec());
    crafter.serve(&forged, whole.clone());
    forged.lock().unwrap().asked.clear();
    install_forged(&url, &ca, &host, &key, "text-transform@1.2.0").unwrap();
    assert_eq!(forged.lock().unwrap().asked, vec![3]);
    assert_eq!(host.state.log_entries(&key).unwrap(), whole);
}
