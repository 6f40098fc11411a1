//! Administration over the API and offline: users, roles per app and their union, API keys
//! and PATs issued, listed, revoked and expired; a person's own PATs; the audit log and the
//! metrics behind their permissions; and the throttle on a source that keeps failing.

use super::auth::create_owner;
use super::oidc::admin;
use super::*;

/// A request with `X-API-Key: key`.
fn keyed(daemon: &Daemon, key: &str, method: &str, path: &str, body: Option<&Json>) -> Reply {
    daemon.request(&daemon.api, method, path, body, &[("x-api-key", key)])
}

fn run_in(app: &str) -> Json {
    json!({ "node": "text-transform/text-transform", "inputs": { "text": "x" },
            "context": { "app_id": app } })
}

#[test]
fn admins_manage_users_roles_and_credentials_and_people_their_own_pats() {
    let fixture = Fixture::new();
    fixture.write_manifest_with_api("auth_failures_per_minute = 1000", "", NODES);
    let owner = create_owner(&fixture, "root");
    let daemon = Daemon::start(&fixture);
    let as_owner = |method: &str, path: &str, body: Option<&Json>| {
        let reply = keyed(&daemon, &owner, method, path, body);
        assert!(
            reply.status < 300,
            "{method} {path}: {} {}",
            reply.status,
            reply.shown()
        );
        reply.json()
    };
    as_owner(
        "POST",
        "/v1/admin/users",
        Some(&json!({"name": "ci", "kind": "technical"})),
    );
    as_owner(
        "POST",
        "/v1/admin/users",
        Some(&json!({"name": "ada", "kind": "person"})),
    );
    as_owner(
        "PUT",
        "/v1/admin/roles/runner",
        Some(&json!({"permissions": ["ExecuteBoards"]})),
    );
    as_owner(
        "PUT",
        "/v1/admin/roles/auditor",
        Some(&json!({"permissions": ["ReadLogs"]})),
    );
    as_owner(
        "PUT",
        "/v1/admin/roles/admin",
        Some(&json!({"permissions": ["Admin"]})),
    );
    as_owner(
        "POST",
        "/v1/admin/assignments",
        Some(&json!({"user": "ci", "role": "runner", "app": "app-a"})),
    );
    let issued = as_owner(
        "POST",
        "/v1/admin/credentials",
        Some(&json!({"user": "ci", "label": "deploys", "expires_in": "1h"})),
    );
    let key = issued["secret"].as_str().unwrap().to_string();
    assert!(key.starts_with("wdh_key_") && key.len() == 8 + 64);

    // A role in one app: runs there, not in another, and nothing that needs another bit.
    assert_eq!(
        keyed(&daemon, &key, "POST", "/v1/runs", Some(&run_in("app-a"))).status,
        200
    );
    let elsewhere = keyed(&daemon, &key, "POST", "/v1/runs", Some(&run_in("app-b")));
    assert_eq!(
        (elsewhere.status, elsewhere.code().as_str()),
        (403, "forbidden")
    );
    let audit = keyed(&daemon, &key, "GET", "/v1/audit", None);
    assert_eq!(audit.status, 403);
    assert!(audit.text().contains("ReadLogs"));
    let users = keyed(&daemon, &key, "GET", "/v1/admin/users", None);
    assert_eq!(users.status, 403);
    assert!(users.text().contains("Admin"));
    // The union of its roles: a second role for every app adds ReadLogs.
    as_owner(
        "POST",
        "/v1/admin/assignments",
        Some(&json!({"user": "ci", "role": "auditor"})),
    );
    let audit = keyed(&daemon, &key, "GET", "/v1/audit?limit=5", None);
    assert_eq!(audit.status, 200, "{}", audit.shown());
    assert!(audit.json()["records"].as_array().unwrap().len() <= 5);
    assert_eq!(
        keyed(&daemon, &key, "POST", "/v1/runs", Some(&run_in("app-a"))).status,
        200
    );
    // Admin implies every permission: reload (WriteConfig), metrics (ReadAnalytics).
    assert_eq!(keyed(&daemon, &key, "GET", "/v1/metrics", None).status, 403);
    as_owner(
        "POST",
        "/v1/admin/assignments",
        Some(&json!({"user": "ci", "role": "admin", "app": "app-c"})),
    );
    assert_eq!(
        keyed(&daemon, &key, "POST", "/v1/runs", Some(&run_in("app-c"))).status,
        200,
        "Admin in app-c runs boards there"
    );
    as_owner(
        "POST",
        "/v1/admin/assignments",
        Some(&json!({"user": "ci", "role": "admin"})),
    );
    assert_eq!(
        keyed(&daemon, &key, "POST", "/v1/admin/reload", None).status,
        200
    );
    let metrics = keyed(&daemon, &key, "GET", "/v1/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("warden_http_requests_total"),
        "{}",
        metrics.shown()
    );
    // The metrics listener asks for a credential too.
    let bare = daemon.request(&daemon.metrics, "GET", "/metrics", None, &[]);
    assert_eq!(bare.status, 401);

    // A tampered key, a revoked key, an expired key: the same 401.
    let mut tampered = key.clone();
    tampered.replace_range(20..21, if &key[20..21] == "0" { "1" } else { "0" });
    assert_eq!(keyed(&daemon, &tampered, "GET", "/v1/me", None).status, 401);
    let short = as_owner(
        "POST",
        "/v1/admin/credentials",
        Some(&json!({"user": "ci", "expires_in": "1s"})),
    );
    // Beyond the longest lifetime is refused.
    let long = keyed(
        &daemon,
        &owner,
        "POST",
        "/v1/admin/credentials",
        Some(&json!({"user": "ci", "expires_in": "400d"})),
    );
    assert_eq!((long.status, long.code().as_str()), (400, "bad_request"));
    let id = issued["credential"]["id"].as_str().unwrap();
    as_owner("DELETE", &format!("/v1/admin/credentials/{id}"), None);
    assert_eq!(keyed(&daemon, &key, "GET", "/v1/me", None).status, 401);
    std::thread::sleep(Duration::from_millis(2100));
    let expired = short["secret"].as_str().unwrap();
    assert_eq!(keyed(&daemon, expired, "GET", "/v1/me", None).status, 401);
    let listed = as_owner("GET", "/v1/admin/credentials?user=ci", None);
    let states: Vec<&str> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|credential| credential["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"revoked") && states.contains(&"expired"),
        "{states:?}"
    );
    assert!(!listed.to_string().contains("wdh_"), "no secret is listed");

    // A person's PAT, issued by an admin: `Authorization: PAT` or the bare token.
    let pat = as_owner(
        "POST",
        "/v1/admin/credentials",
        Some(&json!({"user": "ada"})),
    );
    let secret = pat["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("wdh_pat_"));
    let as_ada = |method: &str, path: &str, scheme: &str| {
        let value = match scheme {
            "" => secret.clone(),
            scheme => format!("{scheme} {secret}"),
        };
        daemon.request(
            &daemon.api,
            method,
            path,
            None,
            &[("authorization", &value)],
        )
    };
    let me = as_ada("GET", "/v1/me", "PAT").json();
    assert_eq!(me["name"], "user:ada");
    assert_eq!(me["permissions"], json!([]));
    assert_eq!(as_ada("GET", "/v1/me", "").status, 200);
    // Exactly its user's permissions, at the time of use.
    assert_eq!(as_ada("GET", "/v1/nodes", "PAT").status, 403);
    as_owner(
        "PUT",
        "/v1/admin/roles/reader",
        Some(&json!({"permissions": ["ReadBoards"]})),
    );
    as_owner(
        "POST",
        "/v1/admin/assignments",
        Some(&json!({"user": "ada", "role": "reader"})),
    );
    assert_eq!(as_ada("GET", "/v1/nodes", "PAT").status, 200);
    // Its own list; a PAT cannot mint PATs; another's PAT cannot be revoked from here.
    let mine = as_ada("GET", "/v1/me/pats", "PAT").json();
    assert_eq!(mine["pats"].as_array().unwrap().len(), 1);
    let minted = as_ada("POST", "/v1/me/pats", "PAT");
    assert_eq!(minted.status, 403);
    let others = keyed(
        &daemon,
        &owner,
        "GET",
        "/v1/admin/credentials?user=ci",
        None,
    )
    .json();
    let other_id = others["credentials"][0]["id"].as_str().unwrap();
    let refused = as_ada("DELETE", &format!("/v1/me/pats/{other_id}"), "PAT");
    assert_eq!(refused.status, 404);
    let own_id = pat["credential"]["id"].as_str().unwrap();
    let revoked = as_ada("DELETE", &format!("/v1/me/pats/{own_id}"), "PAT");
    assert_eq!(revoked.status, 200, "{}", revoked.shown());
    assert_eq!(as_ada("GET", "/v1/me", "PAT").status, 401, "revoked");

    // The audit log has the changes and none of the secrets.
    let records = as_owner("GET", "/v1/audit?limit=1000", None);
    let text = records.to_string();
    assert!(text.contains("\"action\":\"issue\""), "{text}");
    assert!(text.contains("\"action\":\"revoke\""));
    let log = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap_or_default()
        + &daemon.log();
    for secret in [&owner, &key, &secret] {
        assert!(!log.contains(secret.as_str()));
        assert!(!text.contains(secret.as_str()));
    }

    // Offline administration waits for the daemon to stop: the store is its file.
    let busy = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--manifest"])
        .arg(fixture.path("host.toml"))
        .args(["admin", "users"])
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("is the daemon running"));
    drop(daemon);
    let users = admin(&fixture, &["users"]);
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "ci", "root"]);
}

#[test]
fn a_source_that_keeps_failing_is_held_back() {
    let fixture = Fixture::new();
    fixture.write_manifest_with_api("auth_failures_per_minute = 5", "", NODES);
    let owner = create_owner(&fixture, "root");
    let daemon = Daemon::start(&fixture);
    let bad = |key: &str| keyed(&daemon, key, "GET", "/v1/nodes", None);
    for _ in 0..5 {
        assert_eq!(bad("wrong-key-0123456789").status, 401);
    }
    let held = bad("wrong-key-0123456789");
    assert_eq!(
        (held.status, held.code().as_str()),
        (429, "too_many_failures")
    );
    let wait: u64 = held.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&wait), "{wait}");
    // From a held address, an operator key (chosen by a person, so guessable) is not even
    // compared: the right one is 429 too, so guessing goes nowhere.
    assert_eq!(bad(KEY).status, 429);
    // A store key (256 random bits) still gets through: others behind the same NAT or proxy
    // are not locked out. So on the metrics listener.
    assert_eq!(bad(&owner).status, 200);
    let metrics = daemon.request(
        &daemon.metrics,
        "GET",
        "/metrics",
        None,
        &[("x-api-key", &owner)],
    );
    assert_eq!(metrics.status, 200);
    assert!(
        metric(
            &metrics.text(),
            "warden_auth_failures_total",
            r#"kind="throttled""#
        )
        .is_some(),
        "{}",
        metrics.shown()
    );
    let bare = daemon.request(&daemon.metrics, "GET", "/metrics", None, &[]);
    assert_eq!(bare.status, 429, "the metrics listener shares the throttle");
    // The public routes are not held.
    assert_eq!(
        daemon
            .request(&daemon.api, "GET", "/healthz", None, &[])
            .status,
        200
    );
}
