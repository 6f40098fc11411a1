//! OpenID Connect access tokens from an external provider, checked strictly:
//!
//! - The header's `alg` must be on the configured allowlist (RS256 and ES256 unless
//!   narrowed), and the key chosen by `kid` must itself be for that algorithm: a key's own
//!   `alg` (or, without one, its type: RSA keys RS256, P-256 keys ES256) is its allowlist, so
//!   an RSA key is never used as an HMAC secret or an EC key for another curve.
//! - `iss` must be the configured issuer, `aud` must hold the configured audience, `exp` is
//!   required and at most `max_lifetime` ahead, `nbf` and `iat` are checked when present, all with a small leeway; `sub` is
//!   required and names the user in the daemon's user store.
//! - RSA keys are 2048 to 8192 bits (ring's RSA_PKCS1_2048_8192_SHA256); no `rsa` crate.

use super::jwt::{EcKey, Split, TokenError, check_issuer_and_audience, part, split};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use serde_json::Value as Json;
use std::time::Duration;

/// The largest access token looked at.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The algorithms this daemon can check.
pub const ALGORITHMS: [&str; 2] = ["RS256", "ES256"];

/// What an access token must say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcPolicy {
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    /// The algorithms accepted at all (each key narrows to its own).
    pub algorithms: Vec<String>,
    /// The furthest ahead a token's `exp` may be: a token signed to live for years is
    /// refused, whatever the provider meant.
    pub max_lifetime: Duration,
}

/// What a verified access token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcClaims {
    pub subject: String,
    pub expires_at: u64,
}

/// The algorithm a JWK is for: its `alg`, else what its type implies.
fn key_algorithm(jwk: &Json) -> Option<&str> {
    if let Some(alg) = jwk["alg"].as_str() {
        return Some(alg);
    }
    match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("RSA"), _) => Some("RS256"),
        (Some("EC"), Some("P-256")) => Some("ES256"),
        _ => None,
    }
}

fn rsa_verifies(jwk: &Json, message: &[u8], signature: &[u8]) -> bool {
    let decode = |name: &str| {
        BASE64URL
            .decode(jwk[name].as_str().unwrap_or_default())
            .ok()
            .map(|bytes| {
                let start = bytes
                    .iter()
                    .position(|byte| *byte != 0)
                    .unwrap_or(bytes.len());
                bytes[start..].to_vec()
            })
    };
    let (Some(n), Some(e)) = (decode("n"), decode("e")) else {
        return false;
    };
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            message,
            signature,
        )
        .is_ok()
}

/// Verifies an access token against the provider's `keys` (JWKs) and `policy` at `now`.
pub fn verify(
    token: &str,
    keys: &[Json],
    policy: &OidcPolicy,
    now: u64,
) -> Result<OidcClaims, TokenError> {
    let Split {
        header,
        payload_text,
        signature_text,
        signed,
    } = split(token, MAX_TOKEN_BYTES)?;
    let alg = match header["alg"].as_str() {
        Some(alg) if policy.algorithms.iter().any(|allowed| allowed == alg) => alg,
        Some(other) => return Err(TokenError::Algorithm(other.chars().take(16).collect())),
        None => return Err(TokenError::Algorithm("missing".into())),
    };
    if let Some(typ) = header.get("typ") {
        let typ = typ.as_str().unwrap_or_default().to_ascii_lowercase();
        if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
            return Err(TokenError::Malformed("typ"));
        }
    }
    let signature = BASE64URL
        .decode(signature_text)
        .map_err(|_| TokenError::Malformed("signature"))?;
    let by_kid: Vec<&Json> = match header["kid"].as_str() {
        Some(kid) => keys
            .iter()
            .filter(|key| key["kid"].as_str() == Some(kid))
            .collect(),
        None => keys.iter().collect(),
    };
    if by_kid.is_empty() {
        return Err(TokenError::UnknownKey);
    }
    let usable: Vec<&Json> = by_kid
        .into_iter()
        .filter(|key| key_algorithm(key) == Some(alg))
        .filter(|key| key["use"].as_str().is_none_or(|usage| usage == "sig"))
        .collect();
    if usable.is_empty() {
        return Err(TokenError::KeyAlgorithm);
    }
    let verified = usable.iter().any(|key| match alg {
        "RS256" => key["kty"].as_str() == Some("RSA") && rsa_verifies(key, signed, &signature),
        "ES256" => {
            signature.len() == 64
                && EcKey::from_jwk(key).is_ok_and(|key| key.verifies(signed, &signature))
        }
        _ => false,
    });
    if !verified {
        return Err(TokenError::BadSignature);
    }
    check_claims(&part(payload_text, "payload")?, policy, now)
}

fn check_claims(claims: &Json, policy: &OidcPolicy, now: u64) -> Result<OidcClaims, TokenError> {
    let leeway = policy.leeway.as_secs();
    let time = |name: &'static str| match &claims[name] {
        Json::Null => Ok(None),
        value => value.as_u64().map(Some).ok_or(TokenError::Malformed(name)),
    };
    let exp = time("exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if exp
        > now
            .saturating_add(policy.max_lifetime.as_secs())
            .saturating_add(leeway)
    {
        return Err(TokenError::TooLong);
    }
    if let Some(nbf) = time("nbf")?
        && now.saturating_add(leeway) < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    if let Some(iat) = time("iat")?
        && iat > now.saturating_add(leeway)
    {
        return Err(TokenError::IssuedInFuture);
    }
    check_issuer_and_audience(claims, &policy.issuer, &policy.audience)?;
    let subject = claims["sub"]
        .as_str()
        .filter(|sub| !sub.is_empty())
        .ok_or(TokenError::MissingClaim("sub"))?;
    Ok(OidcClaims {
        subject: subject.to_string(),
        expires_at: exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    };
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const ISSUER: &str = "https://idp.example";

    fn policy() -> OidcPolicy {
        OidcPolicy {
            issuer: ISSUER.into(),
            audience: "warden".into(),
            leeway: Duration::from_secs(30),
            algorithms: ALGORITHMS.iter().map(|alg| alg.to_string()).collect(),
            max_lifetime: Duration::from_secs(24 * 3600),
        }
    }

    fn rsa() -> (RsaKeyPair, Json) {
        let pair = RsaKeyPair::from_der(include_bytes!("testdata/rsa2048.der")).unwrap();
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
        let jwk = json!({
            "kty": "RSA", "kid": "rsa-1", "use": "sig",
            "n": BASE64URL.encode(&public.n),
            "e": BASE64URL.encode(&public.e),
        });
        (pair, jwk)
    }

    fn ec() -> (EcdsaKeyPair, Json) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "ec-1",
            "x": BASE64URL.encode(&point[1..33]), "y": BASE64URL.encode(&point[33..]),
        });
        (pair, jwk)
    }

    fn signed(header: &Json, claims: &Json) -> String {
        format!(
            "{}.{}",
            BASE64URL.encode(header.to_string()),
            BASE64URL.encode(claims.to_string())
        )
    }

    fn rs256(pair: &RsaKeyPair, header: &Json, claims: &Json) -> String {
        let message = signed(header, claims);
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{message}.{}", BASE64URL.encode(signature))
    }

    fn es256(pair: &EcdsaKeyPair, header: &Json, claims: &Json) -> String {
        let message = signed(header, claims);
        let signature = pair
            .sign(&ring::rand::SystemRandom::new(), message.as_bytes())
            .unwrap();
        format!("{message}.{}", BASE64URL.encode(signature.as_ref()))
    }

    fn claims() -> Json {
        json!({"iss": ISSUER, "aud": ["warden", "other"], "sub": "ada-sub", "exp": NOW + 300, "iat": NOW, "nbf": NOW})
    }

    #[test]
    fn rs256_and_es256_tokens_verify_with_their_own_keys_only() {
        let (rsa_pair, rsa_key) = rsa();
        let (ec_pair, ec_key) = ec();
        let keys = vec![rsa_key.clone(), ec_key.clone()];
        let rsa_header = json!({"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"});
        let token = rs256(&rsa_pair, &rsa_header, &claims());
        let verified = verify(&token, &keys, &policy(), NOW).unwrap();
        assert_eq!(verified.subject, "ada-sub");
        let token = es256(&ec_pair, &json!({"alg": "ES256", "kid": "ec-1"}), &claims());
        assert!(verify(&token, &keys, &policy(), NOW).is_ok());

        let refused = |token: &str| verify(token, &keys, &policy(), NOW).unwrap_err().kind();
        // The RSA key's kid with ES256 in the header: the key is not for that algorithm.
        let token = es256(
            &ec_pair,
            &json!({"alg": "ES256", "kid": "rsa-1"}),
            &claims(),
        );
        assert_eq!(refused(&token), "key_algorithm");
        // HS256 keyed with the RSA key's public bytes, and `none`: off the allowlist.
        let message = signed(&json!({"alg": "HS256", "kid": "rsa-1"}), &claims());
        let hmac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, rsa_key.to_string().as_bytes()),
            message.as_bytes(),
        );
        let token = format!("{message}.{}", BASE64URL.encode(hmac.as_ref()));
        assert_eq!(refused(&token), "algorithm");
        let token = format!("{}.", signed(&json!({"alg": "none"}), &claims()));
        assert_eq!(refused(&token), "algorithm");
        // An allowlist narrowed to ES256 refuses RS256 whatever the key.
        let narrowed = OidcPolicy {
            algorithms: vec!["ES256".into()],
            ..policy()
        };
        let token = rs256(&rsa_pair, &rsa_header, &claims());
        assert_eq!(
            verify(&token, &keys, &narrowed, NOW).unwrap_err().kind(),
            "algorithm"
        );
        // Unknown kid, bad signature.
        let token = rs256(
            &rsa_pair,
            &json!({"alg": "RS256", "kid": "gone"}),
            &claims(),
        );
        assert_eq!(refused(&token), "unknown_key");
        let mut token = rs256(&rsa_pair, &rsa_header, &claims());
        token.replace_range(token.len() - 4.., "AAAA");
        assert_eq!(refused(&token), "bad_signature");
        // A key whose alg says RS256 but whose type is EC does not verify an RS256 token.
        let mut odd = ec_key.clone();
        odd["alg"] = json!("RS256");
        odd["kid"] = json!("rsa-1");
        let token = rs256(&rsa_pair, &rsa_header, &claims());
        assert_eq!(
            verify(&token, &[odd], &policy(), NOW).unwrap_err().kind(),
            "bad_signature"
        );
    }

    #[test]
    fn claims_are_checked_with_leeway() {
        let (pair, key) = rsa();
        let keys = vec![key];
        let header = json!({"alg": "RS256", "kid": "rsa-1"});
        let check = |edit: &dyn Fn(&mut Json)| {
            let mut claims = claims();
            edit(&mut claims);
            verify(&rs256(&pair, &header, &claims), &keys, &policy(), NOW)
                .err()
                .map(|error| error.kind())
        };
        assert_eq!(check(&|_| {}), None);
        assert_eq!(check(&|c| c["exp"] = json!(NOW - 31)), Some("expired"));
        assert_eq!(check(&|c| c["exp"] = json!(NOW - 10)), None, "leeway");
        assert_eq!(check(&|c| c["exp"] = json!(u64::MAX)), Some("too_long"));
        assert_eq!(
            check(&|c| c["exp"] = json!(NOW + 25 * 3600)),
            Some("too_long")
        );
        assert_eq!(
            check(&|c| c["nbf"] = json!(NOW + 120)),
            Some("not_yet_valid")
        );
        assert_eq!(
            check(&|c| c["iat"] = json!(NOW + 120)),
            Some("issued_in_future")
        );
        assert_eq!(
            check(&|c| c["iss"] = json!("https://evil.example")),
            Some("wrong_issuer")
        );
        assert_eq!(
            check(&|c| c["aud"] = json!("other")),
            Some("wrong_audience")
        );
        assert_eq!(
            check(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            Some("missing_claim")
        );
        assert_eq!(
            check(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Some("missing_claim")
        );
        assert_eq!(
            check(&|c| {
                c.as_object_mut().unwrap().remove("nbf");
            }),
            None,
            "nbf is checked when present"
        );
    }
}
