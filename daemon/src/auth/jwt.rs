//! The workflow executor's tokens: ES256 (ECDSA P-256) JWTs, checked strictly.
//!
//! - The algorithm is pinned: a token whose header says anything but `ES256` (`none`, `HS256`
//!   keyed with the public key, `ES384`, …) is refused before any key is looked at, and a
//!   header with `crit` is refused.
//! - `exp`, `nbf` and `iat` are required, with a small leeway, and a token may not live longer
//!   than the configured maximum; `iss` must be the configured issuer and `aud` must hold the
//!   configured audience; `run_id`, `app_id` and `board_id` are required (`event_id` and `jti`
//!   are taken when present).
//! - Verification uses ring's fixed-size P-256 signatures (r‖s, 64 bytes), as JWS defines.
//!
//! Every refusal has a kind ([`TokenError::kind`]) for the audit log and metrics; callers are
//! told only that the token was refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use serde_json::Value as Json;
use std::time::Duration;

/// The largest token looked at.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The standard SubjectPublicKeyInfo prefix of an uncompressed P-256 key.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A P-256 public key that may sign executor tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcKey {
    /// The JWK's `kid`, when it came with one.
    pub kid: Option<String>,
    /// The uncompressed point (0x04 ‖ x ‖ y).
    point: Vec<u8>,
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM public key: {0}")]
    NotPem(String),
    #[error("not a P-256 public key (an EC key on the curve prime256v1, uncompressed)")]
    NotP256,
    #[error("the JWK is not usable for ES256: {0}")]
    Jwk(String),
}

impl EcKey {
    /// A key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block.
    pub fn from_pem(pem: &str) -> Result<EcKey, KeyError> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|line| *line != "-----BEGIN PUBLIC KEY-----")
            .skip(1)
            .take_while(|line| *line != "-----END PUBLIC KEY-----")
            .collect();
        if body.is_empty() {
            return Err(KeyError::NotPem("no BEGIN PUBLIC KEY block".into()));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|error| KeyError::NotPem(error.to_string()))?;
        EcKey::from_spki_der(&der)
    }

    /// A key from its SubjectPublicKeyInfo DER.
    pub fn from_spki_der(der: &[u8]) -> Result<EcKey, KeyError> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => EcKey::from_point(None, point.to_vec()),
            None => Err(KeyError::NotP256),
        }
    }

    /// A key from a JWK: `kty` `EC`, `crv` `P-256`, `x` and `y`; an `alg` other than `ES256`
    /// and a `use` other than `sig` are refused.
    pub fn from_jwk(jwk: &Json) -> Result<EcKey, KeyError> {
        let field = |name: &str| jwk.get(name).and_then(Json::as_str);
        if field("kty") != Some("EC") || field("crv") != Some("P-256") {
            return Err(KeyError::Jwk("it is not an EC key on P-256".into()));
        }
        if let Some(alg) = field("alg")
            && alg != "ES256"
        {
            return Err(KeyError::Jwk(format!("its alg is {alg}")));
        }
        if let Some(usage) = field("use")
            && usage != "sig"
        {
            return Err(KeyError::Jwk(format!("its use is {usage}")));
        }
        let coordinate = |name: &str| -> Result<Vec<u8>, KeyError> {
            let bytes = BASE64URL
                .decode(field(name).unwrap_or_default())
                .map_err(|_| KeyError::Jwk(format!("{name} is not base64url")))?;
            match bytes.len() {
                32 => Ok(bytes),
                _ => Err(KeyError::Jwk(format!("{name} is not 32 bytes"))),
            }
        };
        let mut point = vec![0x04];
        point.extend(coordinate("x")?);
        point.extend(coordinate("y")?);
        EcKey::from_point(field("kid").map(str::to_string), point)
    }

    fn from_point(kid: Option<String>, point: Vec<u8>) -> Result<EcKey, KeyError> {
        if point.len() != 65 || point[0] != 0x04 {
            return Err(KeyError::NotP256);
        }
        Ok(EcKey { kid, point })
    }

    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            &self.point,
        )
        .verify(message, signature)
        .is_ok()
    }
}

/// The keys of a JWKS document (`{"keys": [...]}`) usable for ES256; the others are skipped.
pub fn keys_from_jwks(document: &Json) -> Vec<EcKey> {
    document
        .get("keys")
        .and_then(Json::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|jwk| EcKey::from_jwk(jwk).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What an executor token must say.
#[derive(Clone, Debug)]
pub struct Policy {
    pub issuer: String,
    /// `warden-executor` unless configured (`flow-like-executor` behind Flow-Like).
    pub audience: String,
    /// Clock difference tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// The longest a token may be valid, from `iat` (or `nbf`) to `exp`.
    pub max_lifetime: Duration,
}

pub const DEFAULT_AUDIENCE: &str = "warden-executor";

impl Policy {
    pub fn new(issuer: impl Into<String>) -> Self {
        Policy {
            issuer: issuer.into(),
            audience: DEFAULT_AUDIENCE.into(),
            leeway: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(15 * 60),
        }
    }
}

/// What a verified executor token says: the run's scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorClaims {
    pub run_id: String,
    pub app_id: String,
    pub board_id: String,
    pub event_id: Option<String>,
    pub jti: Option<String>,
    pub subject: Option<String>,
    /// The user the workflow runs for, when the token names one.
    pub user_id: Option<String>,
    pub expires_at: u64,
}

/// Why a token was refused. The caller is told none of this; the audit log and the metrics
/// get [`TokenError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm is {0}; only ES256 is accepted")]
    Algorithm(String),
    #[error("the token names a critical extension")]
    Critical,
    #[error("no configured key has the token's kid")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token lives longer than the maximum lifetime")]
    TooLong,
    #[error("the token's issuer is not the configured one")]
    WrongIssuer,
    #[error("the token's audience does not include the configured one")]
    WrongAudience,
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    #[error("no key with the token's kid is for the token's algorithm")]
    KeyAlgorithm,
    #[error("the token's signing keys cannot be fetched")]
    KeysUnavailable,
}

impl TokenError {
    /// A short stable name for the audit log and the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::Algorithm(_) => "algorithm",
            TokenError::Critical => "critical",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::TooLong => "too_long",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::KeyAlgorithm => "key_algorithm",
            TokenError::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// The decoded JSON of one part of a token.
/// A JSON object whose keys are each given once: a header or claim set that names `alg` or
/// `aud` twice is refused, not read as whichever copy this parser keeps (another parser, such
/// as the issuer's, may have kept the other).
struct UniqueKeys(serde_json::Map<String, Json>);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = UniqueKeys;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some((key, value)) = map.next_entry::<String, Json>()? {
                    if object.insert(key, value).is_some() {
                        return Err(serde::de::Error::custom("a key is given twice"));
                    }
                }
                Ok(UniqueKeys(object))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

pub(crate) fn part(text: &str, what: &'static str) -> Result<Json, TokenError> {
    let bytes = BASE64URL
        .decode(text)
        .map_err(|_| TokenError::Malformed(what))?;
    match serde_json::from_slice::<UniqueKeys>(&bytes) {
        Ok(UniqueKeys(object)) => Ok(Json::Object(object)),
        Err(_) => Err(TokenError::Malformed(what)),
    }
}

/// A JWS in compact form, taken apart: its decoded header (without `crit`), its payload and
/// signature as sent, and the bytes the signature covers.
pub(crate) struct Split<'a> {
    pub header: Json,
    pub payload_text: &'a str,
    pub signature_text: &'a str,
    pub signed: &'a [u8],
}

/// Takes a token of at most `max` bytes apart; a header naming `crit` is refused (no
/// extension is understood here).
pub(crate) fn split(token: &str, max: usize) -> Result<Split<'_>, TokenError> {
    if token.len() > max {
        return Err(TokenError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(header_text), Some(payload_text), Some(signature_text), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three parts"));
    };
    let header = part(header_text, "header")?;
    if header.get("crit").is_some() {
        return Err(TokenError::Critical);
    }
    Ok(Split {
        header,
        payload_text,
        signature_text,
        signed: &token.as_bytes()[..header_text.len() + 1 + payload_text.len()],
    })
}

/// The `kid` of a token's header, if it is well formed enough to have one: what a caller
/// uses to decide whether a key set is worth refreshing.
pub fn kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    part(header, "header").ok()?["kid"]
        .as_str()
        .map(str::to_string)
}

/// Verifies an executor token against `keys` and `policy` at `now` (Unix seconds).
pub fn verify(
    token: &str,
    keys: &[EcKey],
    policy: &Policy,
    now: u64,
) -> Result<ExecutorClaims, TokenError> {
    let Split {
        header,
        payload_text,
        signature_text,
        signed,
    } = split(token, MAX_TOKEN_BYTES)?;
    // The algorithm is decided here, not by the token.
    match header["alg"].as_str() {
        Some("ES256") => {}
        Some(other) => return Err(TokenError::Algorithm(other.chars().take(16).collect())),
        None => return Err(TokenError::Algorithm("missing".into())),
    }
    if let Some(typ) = header.get("typ")
        && !typ
            .as_str()
            .is_some_and(|typ| typ.eq_ignore_ascii_case("JWT"))
    {
        return Err(TokenError::Malformed("typ"));
    }
    let signature = BASE64URL
        .decode(signature_text)
        .map_err(|_| TokenError::Malformed("signature"))?;
    // Both (r, s) and (r, n − s) verify, and issuers (ring among them) sign with either: the
    // daemon tells tokens apart by their claims, never by their signature bytes.
    if signature.len() != 64 {
        return Err(TokenError::BadSignature);
    }
    // A `kid` picks among keys that have one; keys configured without (PEM files) are all
    // tried.
    let candidates: Vec<&EcKey> = match header["kid"].as_str() {
        Some(kid) if keys.iter().any(|key| key.kid.is_some()) => keys
            .iter()
            .filter(|key| key.kid.as_deref() == Some(kid))
            .collect(),
        _ => keys.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey);
    }
    if !candidates
        .iter()
        .any(|key| key.verifies(signed, &signature))
    {
        return Err(TokenError::BadSignature);
    }
    let claims = part(payload_text, "payload")?;
    check_claims(&claims, policy, now)
}

/// `iss` is exactly `issuer`, and `aud` (a string or a list) holds `audience`.
pub(crate) fn check_issuer_and_audience(
    claims: &Json,
    issuer: &str,
    audience: &str,
) -> Result<(), TokenError> {
    if claims["iss"].as_str() != Some(issuer) {
        return Err(TokenError::WrongIssuer);
    }
    let holds = match &claims["aud"] {
        Json::String(one) => one == audience,
        Json::Array(all) => all.iter().any(|one| one.as_str() == Some(audience)),
        _ => false,
    };
    if !holds {
        return Err(TokenError::WrongAudience);
    }
    Ok(())
}

fn check_claims(claims: &Json, policy: &Policy, now: u64) -> Result<ExecutorClaims, TokenError> {
    let time = |name: &'static str| claims[name].as_u64().ok_or(TokenError::MissingClaim(name));
    let text = |name: &'static str| {
        claims[name]
            .as_str()
            .filter(|value| !value.is_empty())
            .map(str::to_string)
            .ok_or(TokenError::MissingClaim(name))
    };
    let (exp, nbf, iat) = (time("exp")?, time("nbf")?, time("iat")?);
    let leeway = policy.leeway.as_secs();
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if now.saturating_add(leeway) < nbf {
        return Err(TokenError::NotYetValid);
    }
    if iat > now.saturating_add(leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    let max = policy.max_lifetime.as_secs();
    if exp.saturating_sub(iat) > max || exp.saturating_sub(nbf) > max {
        return Err(TokenError::TooLong);
    }
    check_issuer_and_audience(claims, &policy.issuer, &policy.audience)?;
    // An optional claim, when present, is a string: a number in its place is not dropped
    // silently (an `event_id` of 7 would make an event run a board run).
    let optional = |name: &'static str| match &claims[name] {
        Json::Null => Ok(None),
        Json::String(value) => Ok(Some(value.clone())),
        _ => Err(TokenError::Malformed(name)),
    };
    Ok(ExecutorClaims {
        run_id: text("run_id")?,
        app_id: text("app_id")?,
        board_id: text("board_id")?,
        event_id: optional("event_id")?,
        jti: optional("jti")?,
        subject: optional("sub")?,
        user_id: optional("user_id")?,
        expires_at: exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    struct Signer {
        pair: EcdsaKeyPair,
        kid: &'static str,
    }

    impl Signer {
        fn new(kid: &'static str) -> Signer {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Signer { pair, kid }
        }

        fn key(&self) -> EcKey {
            let point = self.pair.public_key().as_ref();
            EcKey::from_jwk(&json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256",
                "x": BASE64URL.encode(&point[1..33]), "y": BASE64URL.encode(&point[33..]),
            }))
            .unwrap()
        }

        fn sign(&self, header: &Json, claims: &Json) -> String {
            let signed = format!(
                "{}.{}",
                BASE64URL.encode(header.to_string()),
                BASE64URL.encode(claims.to_string())
            );
            let signature = self
                .pair
                .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
                .unwrap();
            format!("{signed}.{}", BASE64URL.encode(signature.as_ref()))
        }

        fn token(&self, claims: &Json) -> String {
            self.sign(
                &json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}),
                claims,
            )
        }
    }

    fn claims() -> Json {
        json!({
            "iss": "flow-like", "aud": "warden-executor", "sub": "executor-1",
            "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 290,
            "run_id": "run-1", "app_id": "app-a", "board_id": "board-x", "jti": "t-1",
        })
    }

    fn with(change: impl FnOnce(&mut Json)) -> Json {
        let mut claims = claims();
        change(&mut claims);
        claims
    }

    fn policy() -> Policy {
        Policy::new("flow-like")
    }

    #[test]
    fn a_good_token_gives_its_scope() {
        let signer = Signer::new("k1");
        let claims = verify(&signer.token(&claims()), &[signer.key()], &policy(), NOW).unwrap();
        assert_eq!(claims.board_id, "board-x");
        assert_eq!(claims.app_id, "app-a");
        assert_eq!(claims.run_id, "run-1");
        assert_eq!(claims.jti.as_deref(), Some("t-1"));
        assert_eq!(claims.event_id, None);
        // An audience list holding ours is fine; `event_id` is taken.
        let listed = with(|c| {
            c["aud"] = json!(["other", "warden-executor"]);
            c["event_id"] = json!("e-9");
        });
        let claims = verify(&signer.token(&listed), &[signer.key()], &policy(), NOW).unwrap();
        assert_eq!(claims.event_id.as_deref(), Some("e-9"));
    }

    #[test]
    fn every_refusal_has_its_kind() {
        let signer = Signer::new("k1");
        let keys = [signer.key()];
        let check = |token: String| verify(&token, &keys, &policy(), NOW).unwrap_err().kind();
        assert_eq!(
            check(signer.token(&with(|c| c["exp"] = json!(NOW - 100)))),
            "expired"
        );
        assert_eq!(
            check(signer.token(&with(|c| c["nbf"] = json!(NOW + 100)))),
            "not_yet_valid"
        );
        assert_eq!(
            check(signer.token(&with(|c| c["iat"] = json!(NOW + 100)))),
            "issued_in_future"
        );
        assert_eq!(
            check(signer.token(&with(|c| c["exp"] = json!(NOW + 3600)))),
            "too_long",
            "beyond the maximum lifetime"
        );
        assert_eq!(
            check(signer.token(&with(|c| c["iss"] = json!("evil")))),
            "wrong_issuer"
        );
        assert_eq!(
            check(signer.token(&with(|c| c["aud"] = json!("other")))),
            "wrong_audience"
        );
        for claim in ["exp", "nbf", "iat", "run_id", "app_id", "board_id"] {
            let token = signer.token(&with(|c| {
                c.as_object_mut().unwrap().remove(claim);
            }));
            assert_eq!(check(token), "missing_claim", "{claim}");
        }
        // Another key's signature, and an unknown kid.
        let stranger = Signer::new("k1");
        assert_eq!(check(stranger.token(&claims())), "bad_signature");
        let unknown = Signer::new("k9");
        assert_eq!(check(unknown.token(&claims())), "unknown_key");
        // Tampered claims under a good signature.
        let token = signer.token(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = BASE64URL.encode(with(|c| c["board_id"] = json!("board-y")).to_string());
        assert_eq!(
            check(format!("{}.{forged}.{}", parts[0], parts[2])),
            "bad_signature"
        );
        assert_eq!(check("a.b".into()), "malformed");
        assert_eq!(
            check(signer.token(&with(|c| c["event_id"] = json!(7)))),
            "malformed"
        );
        let typed = signer.sign(&json!({"alg": "ES256", "typ": "at+jwt+evil"}), &claims());
        assert_eq!(check(typed), "malformed");
        assert_eq!(check(format!("{token}.x")), "malformed");
        // A claim given twice, signed: refused rather than read as one copy or the other.
        let claims_text = claims().to_string();
        let doubled = format!(
            "{},\"board_id\":\"board-y\"}}",
            claims_text.trim_end_matches('}')
        );
        let signed = format!(
            "{}.{}",
            BASE64URL.encode(json!({"alg": "ES256", "kid": "k1"}).to_string()),
            BASE64URL.encode(doubled)
        );
        let signature = signer
            .pair
            .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
            .unwrap();
        let token = format!("{signed}.{}", BASE64URL.encode(signature.as_ref()));
        assert_eq!(check(token), "malformed");
    }

    #[test]
    fn the_header_cannot_choose_the_algorithm() {
        let signer = Signer::new("k1");
        let keys = [signer.key()];
        let payload = BASE64URL.encode(claims().to_string());
        // `alg: none`, with and without a signature.
        let none = BASE64URL.encode(json!({"alg": "none", "kid": "k1"}).to_string());
        for token in [
            format!("{none}.{payload}."),
            format!("{none}.{payload}.AAAA"),
        ] {
            assert_eq!(
                verify(&token, &keys, &policy(), NOW).unwrap_err().kind(),
                "algorithm"
            );
        }
        // HS256 keyed with the public key (the classic confusion).
        let header = BASE64URL.encode(json!({"alg": "HS256", "kid": "k1"}).to_string());
        let signed = format!("{header}.{payload}");
        let point = signer.pair.public_key().as_ref().to_vec();
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &point),
            signed.as_bytes(),
        );
        let token = format!("{signed}.{}", BASE64URL.encode(mac.as_ref()));
        assert_eq!(
            verify(&token, &keys, &policy(), NOW).unwrap_err().kind(),
            "algorithm"
        );
        // Other ECDSA curves, a missing alg, and a critical extension.
        for header in [
            json!({"alg": "ES384"}),
            json!({"kid": "k1"}),
            json!({"alg": "ES256", "crit": ["exp"]}),
        ] {
            let token = signer.sign(&header, &claims());
            assert!(verify(&token, &keys, &policy(), NOW).is_err(), "{header}");
        }
    }

    #[test]
    fn keys_come_from_pem_and_jwks_and_only_p256_for_es256() {
        let signer = Signer::new("k1");
        let point = signer.pair.public_key().as_ref();
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(point);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        let from_pem = EcKey::from_pem(&pem).unwrap();
        let token = signer.sign(&json!({"alg": "ES256"}), &claims());
        verify(&token, &[from_pem], &policy(), NOW).unwrap();
        assert!(EcKey::from_pem("not a key").is_err());
        assert!(EcKey::from_spki_der(&der[1..]).is_err());
        let jwks = json!({"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"},
            {"kty": "EC", "crv": "P-256", "alg": "ES512", "x": "AA", "y": "AA"},
            {"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
             "x": BASE64URL.encode(&point[1..33]), "y": BASE64URL.encode(&point[33..])},
        ]});
        let keys = keys_from_jwks(&jwks);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("k1"));
        assert_eq!(kid(&signer.token(&claims())).as_deref(), Some("k1"));
    }
}
