//! Who may call the daemon: the first owner's API key made offline, the workflow executor's
//! ES256 tokens and their scope, and refusals that tell the caller nothing of what was wrong.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

pub fn create_owner(fixture: &Fixture, name: &str) -> String {
    create_owner_with(fixture, name, &[])
}

/// The same, with `env` set for the command (a cluster's database URL).
pub fn create_owner_with(fixture: &Fixture, name: &str, env: &[(&str, &str)]) -> String {
    let stdout = warden_serve(fixture, &["--create-owner", name], env);
    stdout
        .split_whitespace()
        .find(|word| word.starts_with("wdh_key_"))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string()
}

/// `warden serve --manifest FIXTURE/host.toml ARGS…` with `env`: its standard output, once it
/// succeeded.
pub fn warden_serve(fixture: &Fixture, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--manifest"])
        .arg(fixture.path("host.toml"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_first_owner_is_made_offline_and_its_key_is_an_api_key() {
    let fixture = Fixture::new();
    let key = create_owner(&fixture, "root");
    assert_eq!(key.len(), 8 + 64, "256 random bits behind the prefix");
    // A second owner of the same name is refused.
    let again = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--manifest"])
        .arg(fixture.path("host.toml"))
        .args(["--create-owner", "root"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let daemon = Daemon::start(&fixture);
    let with = |headers: &[(&str, &str)], method: &str, path: &str| {
        daemon.request(&daemon.api, method, path, None, headers)
    };
    assert_eq!(with(&[("x-api-key", &key)], "GET", "/v1/nodes").status, 200);
    assert_eq!(
        with(&[("x-api-key", &key)], "POST", "/v1/admin/reload").status,
        200
    );
    // An API key belongs in X-API-Key; two different credentials are refused.
    let bearer = format!("Bearer {key}");
    assert_eq!(
        with(&[("authorization", &bearer)], "GET", "/v1/nodes").status,
        401
    );
    let both = with(
        &[
            ("x-api-key", &key),
            ("authorization", &format!("Bearer {KEY}")),
        ],
        "GET",
        "/v1/nodes",
    );
    assert_eq!(
        (both.status, both.code().as_str()),
        (401, "unauthenticated")
    );
    // `X-API-Key` names the header, not an Authorization scheme; each header comes once.
    let as_scheme = format!("X-API-Key {key}");
    assert_eq!(
        with(&[("authorization", &as_scheme)], "GET", "/v1/nodes").status,
        401
    );
    let twice = with(
        &[("x-api-key", &key), ("x-api-key", "other")],
        "GET",
        "/v1/nodes",
    );
    assert_eq!(twice.status, 401);
    // The store's user is `user:root`, never the same caller as an operator key named root.
    let ran = daemon.request(
        &daemon.api,
        "POST",
        "/v1/runs",
        Some(&json!({ "node": "text-transform/text-transform", "inputs": { "text": "x" } })),
        &[("x-api-key", &key)],
    );
    assert_eq!(ran.status, 200, "{}", ran.shown());
    let id = ran.json()["run_id"].as_str().unwrap().to_string();
    let record = with(&[("x-api-key", &key)], "GET", &format!("/v1/runs/{id}")).json();
    assert_eq!(record["caller"], "user:root");
    assert_eq!(record["context"]["user_id"], "user:root");
    // A made-up key of the right shape.
    let forged = format!("wdh_key_{}", "0".repeat(64));
    assert_eq!(
        with(&[("x-api-key", &forged)], "GET", "/v1/nodes").status,
        401
    );
    // The store holds no secret.
    let store = std::fs::read(fixture.path("data/auth.redb")).unwrap();
    assert!(
        !store
            .windows(key.len())
            .any(|window| window == key.as_bytes())
    );
}

/// The workflow executor's signing key, and tokens it mints.
struct Executor {
    pair: EcdsaKeyPair,
}

impl Executor {
    fn new() -> Executor {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Executor {
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
        }
    }

    /// Its public key as a PEM SubjectPublicKeyInfo.
    fn pem(&self) -> String {
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(self.pair.public_key().as_ref());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    fn token(&self, header: Json, claims: Json) -> String {
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", B64.encode(signature.as_ref()))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Json {
    let now = now();
    json!({
        "iss": "flow-like", "aud": "warden-executor", "sub": "executor-1",
        "iat": now - 5, "nbf": now - 5, "exp": now + 120,
        "run_id": "wf-run-7", "app_id": "app-a", "board_id": "board-x", "jti": "token-7",
    })
}

#[test]
fn executor_tokens_run_nodes_in_their_scope_and_do_nothing_else() {
    let fixture = Fixture::new();
    let executor = Executor::new();
    std::fs::write(fixture.path("executor.pem"), executor.pem()).unwrap();
    fixture.write_manifest(
        "",
        &format!(
            "{NODES}\n[auth.executor]\nissuer = \"flow-like\"\npublic_keys = [\"executor.pem\"]\n"
        ),
    );
    let daemon = Daemon::start(&fixture);
    let good = executor.token(json!({"alg": "ES256", "typ": "JWT"}), claims());
    let call = |token: &str, method: &str, path: &str, body: Option<&Json>| {
        daemon.request(
            &daemon.api,
            method,
            path,
            body,
            &[("authorization", &format!("Bearer {token}"))],
        )
    };
    let run = json!({ "node": "text-transform/text-transform", "inputs": { "text": "scoped" } });
    let ran = call(&good, "POST", "/v1/runs", Some(&run));
    assert_eq!(ran.status, 200, "{}", ran.shown());
    // The token's scope became the run's context, and its run id and jti are recorded.
    let id = ran.json()["run_id"].as_str().unwrap().to_string();
    let record = daemon.call("GET", &format!("/v1/runs/{id}"), None).json();
    assert_eq!(record["context"]["app_id"], "app-a");
    assert_eq!(record["context"]["board_id"], "board-x");
    assert_eq!(
        record["executor"],
        json!({ "run_id": "wf-run-7", "jti": "token-7" })
    );
    assert_eq!(
        record["context"]["user_id"], "executor-1",
        "the token's user (its sub)"
    );
    // And in the audit log, with the daemon's run id.
    let audit = std::fs::read_to_string(fixture.path("data/audit.jsonl")).unwrap();
    let line = audit
        .lines()
        .find(|line| line.contains("\"executor_run\""))
        .unwrap_or_else(|| panic!("no executor_run record: {audit}"));
    let logged: Json = serde_json::from_str(line).unwrap();
    assert_eq!(logged["run_id"], id.as_str());
    assert_eq!(
        logged["executor"],
        json!({ "run_id": "wf-run-7", "jti": "token-7" })
    );
    // Another board, app or user is refused.
    for context in [
        json!({"board_id": "board-y"}),
        json!({"app_id": "app-b"}),
        json!({"user_id": "root"}),
    ] {
        let mut body = run.clone();
        body["context"] = context;
        let refused = call(&good, "POST", "/v1/runs", Some(&body));
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (403, "out_of_scope")
        );
    }
    // A `kid` in the header finds the PEM key (configured without one).
    let with_kid = executor.token(json!({"alg": "ES256", "kid": "k-2026"}), claims());
    assert_eq!(call(&with_kid, "POST", "/v1/runs", Some(&run)).status, 200);
    // It runs nodes now, never queued (with or without a cluster).
    let mut queued = run.clone();
    queued["mode"] = json!("queued");
    let refused = call(&good, "POST", "/v1/runs", Some(&queued));
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "forbidden"),
        "{}",
        refused.shown()
    );
    assert!(
        refused.text().contains("synchronously"),
        "{}",
        refused.shown()
    );
    // It lists nothing, reads no record (its own neither) and administers nothing.
    let own_record = format!("/v1/runs/{id}");
    for (method, path) in [
        ("GET", "/v1/nodes"),
        ("POST", "/v1/admin/reload"),
        ("GET", own_record.as_str()),
    ] {
        let refused = call(&good, method, path, None);
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (403, "forbidden"),
            "{path}"
        );
    }
    // Refused tokens are 401, and the answer does not say why.
    let mut refusals = Vec::new();
    let with = |change: &dyn Fn(&mut Json)| {
        let mut claims = claims();
        change(&mut claims);
        executor.token(json!({"alg": "ES256"}), claims)
    };
    refusals.push(with(&|c| c["exp"] = json!(now() - 120)));
    refusals.push(with(&|c| c["nbf"] = json!(now() + 600)));
    refusals.push(with(&|c| c["exp"] = json!(now() + 7200)));
    refusals.push(with(&|c| c["iss"] = json!("someone-else")));
    refusals.push(with(&|c| c["aud"] = json!("flow-like-executor")));
    refusals.push(with(&|c| {
        c.as_object_mut().unwrap().remove("board_id");
    }));
    refusals.push(Executor::new().token(json!({"alg": "ES256"}), claims()));
    let payload = B64.encode(claims().to_string());
    refusals.push(format!("{}.{payload}.", B64.encode(r#"{"alg":"none"}"#)));
    let hs_signed = format!("{}.{payload}", B64.encode(r#"{"alg":"HS256"}"#));
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, executor.pair.public_key().as_ref()),
        hs_signed.as_bytes(),
    );
    refusals.push(format!("{hs_signed}.{}", B64.encode(mac.as_ref())));
    let mut bodies = Vec::new();
    for token in &refusals {
        let refused = call(token, "POST", "/v1/runs", Some(&run));
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (401, "unauthenticated"),
            "{token}"
        );
        bodies.push(refused.text());
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "every refusal reads the same: {bodies:?}");
    // The metrics count them by kind.
    let metrics = daemon.metrics_text();
    for kind in [
        "expired",
        "not_yet_valid",
        "too_long",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "bad_signature",
        "algorithm",
    ] {
        assert!(
            metric(
                &metrics,
                "warden_auth_failures_total",
                &format!("kind=\"{kind}\"")
            )
            .is_some(),
            "{kind}: {metrics}"
        );
    }
    // A token is not a secret the log or the metrics carry.
    assert!(!daemon.log().contains(&good[..40]));
    assert!(!metrics.contains(&good[..40]));
}
