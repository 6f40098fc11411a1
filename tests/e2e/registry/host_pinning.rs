//! An installed node stays bound to the registry it came from and to its publisher's key
//! lineage; host state is keyed by the registry's identity, not by the URL it was reached at.

use super::*;

/// An install of `node` from `registry`, optionally accepting a publisher change, with the
/// operator's approvals `hosts` (`None`: what the package requests).
fn install_from(
    registry: &Registry,
    host: &Host,
    token: &str,
    node: &str,
    accept: bool,
    hosts: Option<Vec<String>>,
) -> Result<Installed, InstallError> {
    block_on(install::install(
        &registry.client(token),
        &host.state,
        InstallRequest {
            approve_hosts: hosts,
            accept_publisher_change: accept,
            ..request_for(registry, node, now())
        },
    ))
}

fn publisher_change(result: Result<Installed, InstallError>) -> (String, String) {
    match result {
        Err(InstallError::PublisherChange {
            reason, command, ..
        }) => (reason, command),
        other => panic!("expected a publisher change, got {other:?}"),
    }
}

/// Runs `command` on the host's state directory with the state closed (redb locks it), then
/// opens it again.
fn closed<T>(host: Host, command: impl FnOnce(&Path) -> T) -> (Host, T) {
    let Host { _dir, state } = host;
    drop(state);
    let result = command(_dir.path());
    let state = InstallState::open(_dir.path()).unwrap();
    (Host { _dir, state }, result)
}

fn warden_installed(state: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["installed", "--state"])
        .arg(state)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn an_update_from_a_second_registry_is_a_publisher_change_until_accepted() {
    let first = Registry::start(3600);
    let second = Registry::start(3600);
    // The same publisher name on both: the second registry's `acme` is someone else.
    let acme = first.publisher("alice", "acme");
    let impostor = second.publisher("mallory", "acme");
    first
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    second
        .publish(
            &impostor.token,
            impostor.pack(&plain(), "text-transform", "2.0.0"),
        )
        .unwrap();
    let host = host();
    // The operator approves a host the package does not ask for yet.
    let installed = install_from(
        &first,
        &host,
        &acme.token,
        "text-transform",
        false,
        Some(vec!["api.example.com".into()]),
    )
    .unwrap();
    assert_eq!(installed.approved_hosts, vec!["api.example.com"]);
    let first_id = installed.registry.clone();
    assert_eq!(first_id, first.public_key);

    // The "update" from the second registry is refused, with the command that accepts it.
    let (reason, command) = publish_change_of(&second, &host, &impostor.token);
    assert!(reason.contains(&first_id), "{reason}");
    assert!(
        command.contains("--accept-publisher-change") && command.contains(&second.url),
        "{command}"
    );
    let kept = host.state.installed("text-transform").unwrap().unwrap();
    assert_eq!(
        (kept.version.as_str(), kept.registry.as_str()),
        ("1.0.0", first_id.as_str())
    );
    // Through the CLI: exit 2, and the message names the command.
    let (host, cli) = closed(host, |state| {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["install", "text-transform", "--registry", &second.url])
            .args(["--token", &impostor.token])
            .args(["--registry-key", &second.public_key])
            .arg("--ca-cert")
            .arg(second.cert_path())
            .arg("--state")
            .arg(state)
            .output()
            .unwrap()
    });
    let said = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(2), "{said}");
    assert!(
        said.contains("publisher change")
            && said.contains("warden install text-transform@2.0.0 --registry")
            && said.contains("--accept-publisher-change"),
        "{said}"
    );

    // The first registry's sync still covers the node: a back-dated revocation there blocks it.
    // Back-dated, so by an admin (a publisher token alone may not back-date).
    let revoked = first.post(
        &first.owner,
        &format!(
            "v1/publishers/acme/keys/{}/revoke",
            package::public_key_hex(&acme.key)
        ),
        json!({ "revoked_at": 1 }),
    );
    assert!(revoked.is_ok(), "{revoked:?}");
    let blocked = block_on(install::sync(
        &first.client(&acme.token),
        &host.state,
        now(),
    ))
    .unwrap();
    assert_eq!(blocked.len(), 1, "the first registry's sync lost the node");
    // The second registry's sync does not touch it.
    let report = block_on(install::sync_report(
        &second.client(&impostor.token),
        &host.state,
        now(),
    ))
    .unwrap();
    assert_eq!(report.blocked_in_all, 0);

    // Accepted explicitly: installed from the second registry, approvals start afresh, and the
    // change is recorded and shown.
    let accepted = install_from(
        &second,
        &host,
        &impostor.token,
        "text-transform",
        true,
        None,
    )
    .unwrap();
    assert_eq!(accepted.registry, second.public_key);
    assert!(accepted.approved_hosts.is_empty(), "{accepted:?}");
    assert_eq!(accepted.blocked, None);
    let changes = host.state.publisher_changes().unwrap();
    assert_eq!(changes.len(), 1);
    let change = &changes[0];
    assert_eq!(
        (change.old_registry.as_str(), change.new_registry.as_str()),
        (first_id.as_str(), second.public_key.as_str())
    );
    assert_eq!(change.old_keys, vec![package::public_key_hex(&acme.key)]);
    assert_eq!(
        change.new_keys,
        vec![package::public_key_hex(&impostor.key)]
    );
    let (host, listed) = closed(host, warden_installed);
    assert!(
        listed.contains("publisher change accepted")
            && listed.contains(&format!("registry {first_id} -> {}", second.public_key)),
        "{listed}"
    );
    // From now on the first registry's sync no longer speaks for it, the second's does.
    let report = block_on(install::sync_report(
        &first.client(&acme.token),
        &host.state,
        now(),
    ))
    .unwrap();
    assert!(report.blocked.is_empty());
    assert!(host.state.load("text-transform").is_ok());
}

fn publish_change_of(registry: &Registry, host: &Host, token: &str) -> (String, String) {
    publisher_change(install_from(
        registry,
        host,
        token,
        "text-transform",
        false,
        None,
    ))
}

#[test]
fn a_key_registered_without_a_current_keys_signature_is_a_publisher_change() {
    let registry = Registry::start(3600);
    let acme = registry.publisher("alice", "acme");
    registry
        .publish(&acme.token, acme.pack(&plain(), "text-transform", "1.0.0"))
        .unwrap();
    let host = host();
    install(&registry, &host, &acme.token, "text-transform").unwrap();

    // A rotation signed by the current key stays in the lineage: its update installs.
    let rotated = package::generate_key().unwrap();
    let rotated_hex = package::public_key_hex(&rotated);
    let first_hex = package::public_key_hex(&acme.key);
    registry
        .add_key(&acme.token, "acme", &rotated, Some(&acme.key))
        .unwrap();
    let next = pack_with(&plain(), "text-transform", "1.1.0", "acme", &[], &rotated);
    registry.publish(&acme.token, next).unwrap();
    let updated = install(&registry, &host, &acme.token, "text-transform").unwrap();
    assert_eq!(updated.version, "1.1.0");
    assert_eq!(updated.publisher_keys.len(), 2);

    // Every key revoked (a stolen token, say), then an admin registers a new one: the log
    // shows it signed in by no key the host accepted.
    for key in [&first_hex, &rotated_hex] {
        registry
            .post(
                &acme.token,
                &format!("v1/publishers/acme/keys/{key}/revoke"),
                json!({}),
            )
            .unwrap();
    }
    let admin_key = package::generate_key().unwrap();
    registry
        .add_key(&registry.owner, "acme", &admin_key, None)
        .unwrap();
    let unsigned = pack_with(&plain(), "text-transform", "1.2.0", "acme", &[], &admin_key);
    registry.publish(&acme.token, unsigned).unwrap();
    let (reason, command) =
        publisher_change(install(&registry, &host, &acme.token, "text-transform"));
    assert!(
        reason.contains(&package::public_key_hex(&admin_key)),
        "{reason}"
    );
    assert!(command.contains("text-transform@1.2.0"), "{command}");
    assert_eq!(
        host.state
            .installed("text-transform")
            .unwrap()
            .unwrap()
            .version,
        "1.1.0"
    );

    let accepted =
        install_from(&registry, &host, &acme.token, "text-transform", true, None).unwrap();
    assert_eq!(accepted.version, "1.2.0");
    let changes = host.state.publisher_changes().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].old_registry, changes[0].new_registry);
    assert_eq!(changes[0].old_keys.len(), 2);
    assert!(
        changes[0]
            .new_keys
            .contains(&package::public_key_hex(&admin_key))
    );
}

#[test]
fn a_second_url_of_one_registry_shares_its_state() {
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
    install(&registry, &host, &acme.token, "text-transform@1.1.0").unwrap();

    // The same registry under another name (as a mirror would be).
    let mirror_url = registry.url.replace("127.0.0.1", "localhost");
    let mirror = Client::new(
        &mirror_url,
        std::slice::from_ref(&registry.ca),
        Some(Credential::from_token(&acme.token)),
    )
    .unwrap();
    // No key needed: the mirror proves the identity the host knows, and the host follows the
    // root it holds for it.
    let again = block_on(install::install(
        &mirror,
        &host.state,
        asking("text-transform", None),
    ))
    .unwrap();
    assert_eq!(again.registry, registry.public_key);
    assert_eq!(host.state.registries().unwrap().len(), 1);
    // Rollback protection carries over: the older index through the mirror is refused.
    let replayed = install::accept_index(
        &host.state,
        mirror.base(),
        &old_index,
        &registry.roots(),
        None,
        now(),
    );
    refused(
        replayed.map(|_| unreachable_install()),
        |refusal| matches!(refusal, Refusal::Rollback { served, seen } if served < seen),
    );
    // A sync through the mirror covers what was installed through the first URL.
    registry
        .post(
            &registry.owner,
            &format!(
                "v1/publishers/acme/keys/{}/revoke",
                package::public_key_hex(&acme.key)
            ),
            json!({ "revoked_at": 1 }),
        )
        .unwrap();
    let report = block_on(install::sync_report(&mirror, &host.state, now())).unwrap();
    assert_eq!(report.blocked.len(), 1);
    assert!(report.log_entries_fetched >= 1);

    // A server that claims the identity with the real (public) root chain but signs with its
    // own key is not the registry: its index does not verify under the root the host holds.
    let impostor = Registry::start(3600);
    let impostor_acme = impostor.publisher("mallory", "acme");
    let forged = install::accept_index(
        &host.state,
        impostor.client(&impostor_acme.token).base(),
        &impostor.index(&impostor_acme.token),
        &registry.roots(),
        None,
        now(),
    );
    assert!(
        matches!(
            &forged,
            Err(InstallError::Refused(Refusal::Protocol(
                ProtocolError::BadSignature("index")
            )))
        ),
        "{forged:?}"
    );
}
