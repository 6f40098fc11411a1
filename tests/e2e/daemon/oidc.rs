//! People signed in with OpenID Connect: access tokens from a loopback provider checked
//! against its discovery and JWKS, keys rotated while the daemon runs, the provider down, the
//! refresh rate limited, the `/auth` proxy; and the executor's keys from a JWKS URL.

use super::provider::{Provider, Signer};
use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// Runs `warden serve --manifest host.toml admin ARGS` and returns its JSON answer.
pub fn admin(fixture: &Fixture, args: &[&str]) -> Json {
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--manifest"])
        .arg(fixture.path("host.toml"))
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "admin {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fixture whose manifest trusts `provider` for people's tokens.
fn fixture_with(provider: &Provider, refresh: &str, extra: &str) -> Fixture {
    let fixture = Fixture::new();
    std::fs::write(fixture.path("provider-ca.pem"), &provider.ca_pem).unwrap();
    fixture.write_manifest_with_api(
        "auth_failures_per_minute = 1000",
        "",
        &format!(
            "{NODES}\n[auth.oidc]\nissuer = \"{}\"\naudience = \"warden\"\nca_certs = [\"provider-ca.pem\"]\nkey_refresh_interval = \"{refresh}\"\n{extra}",
            provider.issuer
        ),
    );
    fixture
}

fn claims(provider: &Provider, subject: &str) -> Json {
    let now = now();
    json!({"iss": provider.issuer, "aud": "warden", "sub": subject,
           "iat": now - 5, "nbf": now - 5, "exp": now + 300})
}

/// Calls with `Authorization: Bearer token`.
fn bearer(daemon: &Daemon, token: &str, method: &str, path: &str) -> Reply {
    daemon.request(
        &daemon.api,
        method,
        path,
        None,
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// Polls `check` for up to ten seconds (the key set refreshes at most once a second).
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn oidc_tokens_sign_people_in_and_survive_rotation_and_a_provider_down() {
    let provider = Provider::start();
    let rsa = Signer::rs256("rsa-1");
    provider.state().keys = vec![rsa.jwk()];
    let fixture = fixture_with(&provider, "1s", "");
    admin(&fixture, &["add-user", "ada", "--subject", "ada-sub"]);
    admin(&fixture, &["add-user", "bob", "--subject", "bob-sub"]);
    admin(
        &fixture,
        &["set-role", "reader", "--permissions", "ReadBoards"],
    );
    admin(&fixture, &["assign", "ada", "reader"]);
    let daemon = Daemon::start(&fixture);

    // Success: the subject is the store's user, with that user's roles.
    let ada = rsa.token(json!({"typ": "at+jwt"}), &claims(&provider, "ada-sub"));
    assert_eq!(bearer(&daemon, &ada, "GET", "/v1/nodes").status, 200);
    let me = bearer(&daemon, &ada, "GET", "/v1/me").json();
    assert_eq!(
        (me["name"].as_str(), me["kind"].as_str()),
        (Some("user:ada"), Some("oidc"))
    );
    // A missing permission is 403 naming it; a user without roles may do nothing.
    let refused = bearer(&daemon, &ada, "POST", "/v1/admin/reload");
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "forbidden")
    );
    assert!(
        refused.text().contains("WriteConfig"),
        "{}",
        refused.shown()
    );
    let bob = rsa.token(json!({}), &claims(&provider, "bob-sub"));
    assert_eq!(bearer(&daemon, &bob, "GET", "/v1/nodes").status, 403);

    // Every refusal is the same 401, whatever was wrong.
    let with = |change: &dyn Fn(&mut Json)| {
        let mut claims = claims(&provider, "ada-sub");
        change(&mut claims);
        rsa.token(json!({}), &claims)
    };
    let payload = B64.encode(claims(&provider, "ada-sub").to_string());
    let hs_signed = format!(
        "{}.{payload}",
        B64.encode(json!({"alg": "HS256", "kid": "rsa-1"}).to_string())
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rsa.public_bytes()),
        hs_signed.as_bytes(),
    );
    let stranger = Signer::es256("rsa-1");
    let refusals = [
        ("expired", with(&|c| c["exp"] = json!(now() - 120))),
        ("not_yet_valid", with(&|c| c["nbf"] = json!(now() + 600))),
        ("too_long", with(&|c| c["exp"] = json!(now() + 30 * 86400))),
        (
            "wrong_issuer",
            with(&|c| c["iss"] = json!("https://idp.example")),
        ),
        (
            "wrong_audience",
            with(&|c| c["aud"] = json!("someone-else")),
        ),
        (
            "missing_claim",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        ("unknown_subject", with(&|c| c["sub"] = json!("stranger"))),
        // Another key under the published kid: its algorithm is not that key's.
        (
            "key_algorithm",
            stranger.token(json!({}), &claims(&provider, "ada-sub")),
        ),
        (
            "bad_signature",
            Signer::rs256("rsa-1").token(json!({}), &claims(&provider, "ada-sub"))[..]
                .rsplit_once('.')
                .map(|(signed, _)| format!("{signed}.{}", B64.encode([7u8; 256])))
                .unwrap(),
        ),
        (
            "unknown_key",
            Signer::es256("never-published").token(json!({}), &claims(&provider, "ada-sub")),
        ),
        (
            "algorithm",
            format!("{}.{payload}.", B64.encode(r#"{"alg":"none"}"#)),
        ),
        (
            "algorithm",
            format!("{hs_signed}.{}", B64.encode(mac.as_ref())),
        ),
    ];
    let mut bodies = Vec::new();
    for (kind, token) in &refusals {
        let refused = bearer(&daemon, token, "GET", "/v1/nodes");
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (401, "unauthenticated"),
            "{kind}"
        );
        assert!(refused.headers.contains_key("www-authenticate"), "{kind}");
        bodies.push(refused.text());
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "every refusal reads the same: {bodies:?}");
    let metrics = daemon.metrics_text();
    for (kind, _) in &refusals {
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

    // Revoked in the daemon: roles taken away hold at once (a token carries no permissions).
    let taken = daemon.call(
        "DELETE",
        "/v1/admin/assignments",
        Some(&json!({"user": "ada", "role": "reader"})),
    );
    assert_eq!(taken.status, 200, "{}", taken.shown());
    assert_eq!(bearer(&daemon, &ada, "GET", "/v1/nodes").status, 403);
    let given = daemon.call(
        "POST",
        "/v1/admin/assignments",
        Some(&json!({"user": "ada", "role": "reader"})),
    );
    assert_eq!(given.status, 200);
    // Replayed: an access token is a bearer token until it expires; the same one again works.
    assert_eq!(bearer(&daemon, &ada, "GET", "/v1/nodes").status, 200);

    // The provider rotates: a new ES256 key appears and the RSA key goes. The daemon fetches
    // the new set on the first token with the new kid.
    let es = Signer::es256("es-2");
    provider.state().keys = vec![es.jwk()];
    let rotated = es.token(json!({}), &claims(&provider, "ada-sub"));
    assert!(
        eventually(|| bearer(&daemon, &rotated, "GET", "/v1/nodes").status == 200),
        "the rotated key is fetched and verifies"
    );
    // The old key is gone from the set once fetched again.
    assert!(
        eventually(|| bearer(&daemon, &ada, "GET", "/v1/nodes").status == 401),
        "the retired key no longer verifies"
    );

    // The provider down: the cached key still verifies; an unknown kid is refused.
    provider.state().down = true;
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(bearer(&daemon, &rotated, "GET", "/v1/nodes").status, 200);
    let unknown = Signer::es256("es-3").token(json!({}), &claims(&provider, "ada-sub"));
    assert_eq!(bearer(&daemon, &unknown, "GET", "/v1/nodes").status, 401);
    assert_eq!(bearer(&daemon, &rotated, "GET", "/v1/nodes").status, 200);
    // The proxy says the provider is unavailable rather than hanging or guessing.
    let token = daemon.request(&daemon.api, "POST", "/auth/token", None, &[]);
    assert_eq!(
        (token.status, token.code().as_str()),
        (502, "provider_unavailable")
    );
    // No token reached the log.
    assert!(!daemon.log().contains(&rotated[..60]));
}

#[test]
fn key_fetches_are_rate_limited_and_the_auth_proxy_reaches_only_the_provider() {
    let provider = Provider::start();
    let es = Signer::es256("es-1");
    provider.state().keys = vec![es.jwk()];
    let executor = Signer::es256("exec-1");
    provider.state().executor_keys = vec![executor.jwk()];
    let fixture = fixture_with(
        &provider,
        "1h",
        &format!(
            "\n[auth.executor]\nissuer = \"flow-like\"\njwks_url = \"{}/executor-jwks\"\nca_certs = [\"provider-ca.pem\"]\n",
            provider.issuer
        ),
    );
    admin(&fixture, &["add-user", "ada", "--subject", "ada-sub"]);
    admin(
        &fixture,
        &[
            "set-role",
            "runner",
            "--permissions",
            "ExecuteBoards,ReadBoards",
        ],
    );
    admin(&fixture, &["assign", "ada", "runner"]);
    let daemon = Daemon::start(&fixture);
    let fetched_at_start = provider.state().jwks_fetches;
    assert_eq!(fetched_at_start, 1, "one fetch at start");
    let ada = es.token(json!({}), &claims(&provider, "ada-sub"));
    assert_eq!(bearer(&daemon, &ada, "GET", "/v1/nodes").status, 200);
    // Twenty made-up kids and twenty bad signatures: no fetch within the refresh interval.
    for index in 0..20 {
        let made_up = Signer::es256(&format!("made-up-{index}"))
            .token(json!({}), &claims(&provider, "ada-sub"));
        assert_eq!(bearer(&daemon, &made_up, "GET", "/v1/nodes").status, 401);
        let forged = Signer::es256("es-1").token(json!({}), &claims(&provider, "ada-sub"));
        assert_eq!(bearer(&daemon, &forged, "GET", "/v1/nodes").status, 401);
    }
    assert_eq!(provider.state().jwks_fetches, fetched_at_start);

    // Signed in, a person issues itself a PAT (90 days at most), which then works alone.
    let mint = |body: &Json| {
        daemon.request(
            &daemon.api,
            "POST",
            "/v1/me/pats",
            Some(body),
            &[("authorization", &format!("Bearer {ada}"))],
        )
    };
    let too_long = mint(&json!({"expires_in": "100d"}));
    assert_eq!(
        (too_long.status, too_long.code().as_str()),
        (400, "bad_request")
    );
    let minted = mint(&json!({"label": "laptop", "expires_in": "30d"}));
    assert_eq!(minted.status, 201, "{}", minted.shown());
    let pat = minted.json()["secret"].as_str().unwrap().to_string();
    let with_pat = daemon.request(
        &daemon.api,
        "GET",
        "/v1/nodes",
        None,
        &[("authorization", &format!("PAT {pat}"))],
    );
    assert_eq!(with_pat.status, 200);

    // The executor's keys come from its JWKS URL, matched by kid.
    let now = now();
    let executor_claims = json!({
        "iss": "flow-like", "aud": "warden-executor", "iat": now - 5, "nbf": now - 5,
        "exp": now + 120, "run_id": "r-1", "app_id": "app-a", "board_id": "board-x",
    });
    let token = executor.token(json!({"typ": "JWT"}), &executor_claims);
    let run = json!({ "node": "text-transform/text-transform", "inputs": { "text": "jwks" } });
    let ran = daemon.request(
        &daemon.api,
        "POST",
        "/v1/runs",
        Some(&run),
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(ran.status, 200, "{}", ran.shown());
    // An OIDC key does not sign executor tokens, nor an executor key people's.
    let crossed = es.token(json!({}), &executor_claims);
    assert_eq!(bearer(&daemon, &crossed, "POST", "/v1/runs").status, 401);
    let crossed = executor.token(json!({}), &claims(&provider, "ada-sub"));
    assert_eq!(bearer(&daemon, &crossed, "GET", "/v1/nodes").status, 401);

    // The /auth proxy: discovery and keys from the cache, authorize as a redirect, token,
    // userinfo and revoke forwarded to the provider's own endpoints.
    let discovery = daemon.request(&daemon.api, "GET", "/auth/discovery", None, &[]);
    assert_eq!(discovery.status, 200);
    assert_eq!(discovery.json()["issuer"], provider.issuer.as_str());
    let jwks = daemon
        .request(&daemon.api, "GET", "/auth/jwks", None, &[])
        .json();
    assert_eq!(jwks["keys"][0]["kid"], "es-1");
    let authorize = daemon.request(
        &daemon.api,
        "GET",
        "/auth/authorize?client_id=console&state=s1",
        None,
        &[],
    );
    assert_eq!(authorize.status, 302);
    assert_eq!(
        authorize.headers["location"].to_str().unwrap(),
        format!("{}/authorize?client_id=console&state=s1", provider.issuer)
    );
    let form = b"grant_type=authorization_code&code=abc".to_vec();
    let exchanged = daemon.raw(
        &daemon.api,
        "POST",
        "/auth/token",
        form,
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(exchanged.status, 200, "{}", exchanged.shown());
    assert_eq!(
        exchanged.json()["body"],
        "grant_type=authorization_code&code=abc"
    );
    assert_eq!(exchanged.headers["cache-control"], "no-store");
    let userinfo = daemon.request(
        &daemon.api,
        "GET",
        "/auth/userinfo",
        None,
        &[("authorization", &format!("Bearer {ada}"))],
    );
    assert_eq!(userinfo.json()["endpoint"], "/userinfo");
    let revoked = daemon.raw(
        &daemon.api,
        "POST",
        "/auth/revoke",
        b"token=t".to_vec(),
        &[],
    );
    assert_eq!(revoked.json()["endpoint"], "/revoke");
    // A body over the cap is refused before anything is sent.
    let before = provider.state().forwarded.len();
    let huge = daemon.raw(
        &daemon.api,
        "POST",
        "/auth/token",
        vec![b'a'; 100 * 1024],
        &[],
    );
    assert_eq!(huge.status, 413);
    assert_eq!(provider.state().forwarded.len(), before);
}
