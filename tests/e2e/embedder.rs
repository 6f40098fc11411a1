//! functions, oauth, token and a2ui: served by the embedder, and only within the grant.

use crate::support::*;
use std::sync::{Arc, Mutex};
use warden::build::Target;
use warden_host::embedder::{Credentials, Functions, OAuthToken, ServiceToken};
use warden_host::{
    Capabilities, Field, RunOutcome, RunRequest, Runtime, Value, WasmSecurityConfig,
};

const SECRET: &str = "gho_very_secret_token";

fn config(grant: Capabilities) -> WasmSecurityConfig {
    WasmSecurityConfig {
        capabilities: grant,
        ..WasmSecurityConfig::default()
    }
}

fn all() -> Capabilities {
    Capabilities::OAUTH | Capabilities::TOKEN | Capabilities::FUNCTIONS | Capabilities::A2UI
}

fn probe(request: RunRequest, grant: Capabilities) -> RunOutcome {
    let runtime = Runtime::new().unwrap();
    let node = test_node("embedder-probe", Target::Unknown);
    run(&runtime, &node, &config(grant), request).unwrap()
}

fn ask(op: &str, name: &str, scopes: &str) -> RunRequest {
    request(
        "embedder",
        &[
            ("op", Value::Text(op.into())),
            ("name", Value::Text(name.into())),
            ("scopes", Value::Text(scopes.into())),
        ],
    )
}

fn text(outcome: &RunOutcome, name: &str) -> Option<String> {
    outcome
        .outputs
        .iter()
        .find(|f| f.name == name)
        .map(|f| match &f.value {
            Value::Text(text) => text.clone(),
            other => format!("{other:?}"),
        })
}

fn credentials() -> Arc<Credentials> {
    Arc::new(Credentials {
        oauth: vec![
            OAuthToken {
                provider: "github".into(),
                scopes: vec!["repo".into(), "user".into()],
                token: SECRET.into(),
                expires_at_ms: None,
            },
            OAuthToken {
                provider: "google".into(),
                scopes: vec!["drive".into()],
                token: "expired".into(),
                expires_at_ms: Some(1),
            },
        ],
        tokens: vec![ServiceToken {
            service: "openai".into(),
            scopes: vec![],
            token: "sk-test".into(),
        }],
    })
}

#[test]
fn tokens_are_given_only_when_the_scopes_are_covered_and_never_leak() {
    let mut request = ask("oauth", "github", "repo");
    request.credentials = Some(credentials());
    let outcome = probe(request.clone(), all());
    assert_eq!(
        text(&outcome, "value").as_deref(),
        Some("gho_very_secret_token [repo,user]")
    );

    for (provider, scopes) in [
        ("github", "repo,admin"),
        ("gitlab", "repo"),
        ("google", "drive"),
    ] {
        let mut denied = ask("oauth", provider, scopes);
        denied.credentials = Some(credentials());
        let outcome = probe(denied, all());
        let error = text(&outcome, "error").unwrap_or_default();
        assert!(
            error.starts_with("denied:") && error.contains(provider),
            "{error}"
        );
        assert!(!error.contains(SECRET));
        assert!(
            outcome
                .log
                .iter()
                .all(|record| !record.message.contains(SECRET))
        );
    }
    let mut service = ask("token", "openai", "");
    service.credentials = Some(credentials());
    assert_eq!(
        text(&probe(service, all()), "value").as_deref(),
        Some("sk-test")
    );
    let outcome = probe(ask("token", "openai", ""), all());
    assert!(text(&outcome, "error").is_some_and(|e| e.starts_with("denied:")));
}

#[test]
fn host_functions_need_registration_and_their_capabilities() {
    let mut functions = Functions::default();
    functions.register("double", Capabilities::empty(), |arguments: Vec<Field>| {
        let Some(Value::Integer(x)) = arguments.first().map(|field| field.value.clone()) else {
            return Err("x must be an integer".into());
        };
        Ok(vec![Field::new("y", Value::Integer(x * 2))])
    });
    functions.register("wipe-board", Capabilities::STORAGE_DELETE, |_| Ok(vec![]));
    functions.register("broken", Capabilities::empty(), |_| {
        Err("the database is down".into())
    });
    let functions = Arc::new(functions);
    let call = |name: &str, grant: Capabilities| {
        let mut request = ask("call", name, "");
        request.functions = Some(functions.clone());
        probe(request, grant)
    };
    assert_eq!(
        text(&call("double", all()), "value").as_deref(),
        Some("y=Value::Integer(40)")
    );
    let error = text(&call("wipe-board", all()), "error").unwrap_or_default();
    assert!(
        error.contains("needs the capabilities storage-delete"),
        "{error}"
    );
    assert_eq!(
        text(
            &call("wipe-board", all() | Capabilities::STORAGE_DELETE),
            "value"
        )
        .as_deref(),
        Some("")
    );
    assert!(
        text(&call("unknown", all()), "error")
            .is_some_and(|e| e.contains("registered no function `unknown`"))
    );
    assert!(
        text(&call("broken", all()), "error")
            .is_some_and(|e| e.starts_with("unavailable:") && e.contains("database is down"))
    );
}

#[test]
fn ui_documents_are_validated_and_handed_to_the_embedder() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let document =
        r#"{"version":"0.1","root":{"type":"column","children":[{"type":"text","text":"hi"}]}}"#;
    let mut request = ask("render", document, "");
    request.on_ui = Some(Arc::new(move |document: &serde_json::Value| {
        sink.lock().unwrap().push(document.clone())
    }));
    assert_eq!(
        text(&probe(request.clone(), all()), "value").as_deref(),
        Some("rendered")
    );
    assert_eq!(seen.lock().unwrap()[0]["root"]["children"][0]["text"], "hi");
    let mut invalid = ask(
        "render",
        r#"{"version":"0.1","root":{"type":"script","src":"evil.js"}}"#,
        "",
    );
    invalid.on_ui = request.on_ui.clone();
    let error = text(&probe(invalid, all()), "error").unwrap_or_default();
    assert!(
        error.starts_with("invalid:") && error.contains("$.root.type"),
        "{error}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}
