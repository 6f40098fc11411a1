//! A loopback OpenID Connect provider the tests start: discovery, JWKS (whose keys a test
//! rotates while the daemon runs), authorize, token, userinfo and revocation endpoints, over
//! TLS from a test CA. It can be taken down, and it counts the key-set fetches it serves.
//! Also the signers that mint its tokens: ES256 keys made at run time and one RS256 key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Value as Json, json};
use std::sync::{Arc, Mutex};

/// A key that signs tokens.
pub enum Signer {
    Es256 { kid: String, pair: EcdsaKeyPair },
    Rs256 { kid: String, pair: RsaKeyPair },
}

impl Signer {
    pub fn es256(kid: &str) -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Signer::Es256 {
            kid: kid.into(),
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
        }
    }

    /// The one RSA test key (ring cannot make RSA keys).
    pub fn rs256(kid: &str) -> Signer {
        Signer::Rs256 {
            kid: kid.into(),
            pair: RsaKeyPair::from_der(include_bytes!(
                "../../../daemon/src/auth/testdata/rsa2048.der"
            ))
            .unwrap(),
        }
    }

    pub fn kid(&self) -> &str {
        match self {
            Signer::Es256 { kid, .. } | Signer::Rs256 { kid, .. } => kid,
        }
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Signer::Es256 { .. } => "ES256",
            Signer::Rs256 { .. } => "RS256",
        }
    }

    /// Its public JWK.
    pub fn jwk(&self) -> Json {
        match self {
            Signer::Es256 { kid, pair } => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                       "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
            }
            Signer::Rs256 { kid, pair } => {
                let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": B64.encode(&public.n), "e": B64.encode(&public.e)})
            }
        }
    }

    /// The raw public key bytes (what an HS256 forger would key its MAC with).
    pub fn public_bytes(&self) -> Vec<u8> {
        match self {
            Signer::Es256 { pair, .. } => pair.public_key().as_ref().to_vec(),
            Signer::Rs256 { pair, .. } => pair.public().as_ref().to_vec(),
        }
    }

    /// A token with `header` (its `alg` and `kid` filled in unless given) and `claims`.
    pub fn token(&self, mut header: Json, claims: &Json) -> String {
        if header.get("alg").is_none() {
            header["alg"] = json!(self.alg());
        }
        if header.get("kid").is_none() {
            header["kid"] = json!(self.kid());
        }
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let signature = match self {
            Signer::Es256 { pair, .. } => pair
                .sign(&rng, signed.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Signer::Rs256 { pair, .. } => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, signed.as_bytes(), &mut signature)
                    .unwrap();
                signature
            }
        };
        format!("{signed}.{}", B64.encode(signature))
    }
}

/// What the provider serves and has seen.
#[derive(Default)]
pub struct ProviderState {
    /// The JWKs of `/jwks`.
    pub keys: Vec<Json>,
    /// The JWKs of `/executor-jwks` (the workflow executor's key set).
    pub executor_keys: Vec<Json>,
    /// Dropping every connection.
    pub down: bool,
    /// Fetches of `/jwks` served.
    pub jwks_fetches: u64,
    /// Requests that reached `/token`, `/userinfo` or `/revoke`: method, path, body and the
    /// Authorization header.
    pub forwarded: Vec<(String, String, String, Option<String>)>,
}

pub struct Provider {
    pub issuer: String,
    /// The test CA, PEM, for the manifest's `ca_certs`.
    pub ca_pem: String,
    pub state: Arc<Mutex<ProviderState>>,
}

impl Provider {
    pub fn start() -> Provider {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let state = Arc::new(Mutex::new(ProviderState::default()));
        let served = state.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let issuer = format!(
                    "https://127.0.0.1:{}",
                    listener.local_addr().unwrap().port()
                );
                sender.send(issuer.clone()).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    // Down: connections are dropped, as a provider that is not there.
                    if served.lock().unwrap().down {
                        continue;
                    }
                    let acceptor = acceptor.clone();
                    let state = served.clone();
                    let issuer = issuer.clone();
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |request| {
                            answer(request, issuer.clone(), state.clone())
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        let issuer = receiver.recv().unwrap();
        Provider {
            issuer,
            ca_pem: ca.pem(),
            state,
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, ProviderState> {
        self.state.lock().unwrap()
    }
}

async fn answer(
    request: Request<Incoming>,
    issuer: String,
    state: Arc<Mutex<ProviderState>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let authorization = request
        .headers()
        .get("authorization")
        .map(|value| value.to_str().unwrap_or_default().to_string());
    let body = request.into_body().collect().await?.to_bytes();
    let json = |status: u16, body: Json| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let mut state = state.lock().unwrap();
    Ok(match path.as_str() {
        "/.well-known/openid-configuration" => json(
            200,
            json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/jwks"),
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "userinfo_endpoint": format!("{issuer}/userinfo"),
                "revocation_endpoint": format!("{issuer}/revoke"),
            }),
        ),
        "/jwks" => {
            state.jwks_fetches += 1;
            json(200, json!({ "keys": state.keys }))
        }
        "/executor-jwks" => json(200, json!({ "keys": state.executor_keys })),
        "/token" | "/userinfo" | "/revoke" => {
            let body = String::from_utf8_lossy(&body).into_owned();
            state.forwarded.push((
                method.clone(),
                path.clone(),
                body.clone(),
                authorization.clone(),
            ));
            json(
                200,
                json!({ "endpoint": path, "method": method, "body": body, "authorization": authorization }),
            )
        }
        _ => json(404, json!({"error": "not found"})),
    })
}
