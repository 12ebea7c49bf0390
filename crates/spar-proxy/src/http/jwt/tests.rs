//! jwt_authn semantics on tokens signed here (ES256 and HS256 keys made by aws-lc-rs):
//! what passes, what fails with which status, and what happens to the headers.

#![allow(clippy::unwrap_used)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::config::route::v3::{route_match, RouteMatch};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider, jwt_requirement, requirement_rule, JwtAuthentication, JwtClaimToHeader,
    JwtProvider, JwtRequirement, JwtRequirementOrList, RequirementRule,
};
use envoy_types::pb::google::protobuf::Empty;
use serde_json::json;

use super::*;

const ISS: &str = "https://issuer.example";

fn b64e(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

struct Signer(EcdsaKeyPair);

impl Signer {
    fn new() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        Signer(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap())
    }

    fn jwk(&self, kid: &str) -> serde_json::Value {
        let p = self.0.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64e(&p[1..33]), "y": b64e(&p[33..65])})
    }

    fn token(&self, kid: &str, claims: serde_json::Value) -> String {
        let header = b64e(
            json!({"alg": "ES256", "kid": kid, "typ": "JWT"})
                .to_string()
                .as_bytes(),
        );
        let payload = b64e(claims.to_string().as_bytes());
        let signed = format!("{header}.{payload}");
        let sig = self
            .0
            .sign(&SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64e(sig.as_ref()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn provider(issuer: &str, jwks: &serde_json::Value) -> JwtProvider {
    JwtProvider {
        issuer: issuer.into(),
        audiences: vec!["https://api.example/".into()],
        payload_in_metadata: "payload".into(),
        claim_to_headers: vec![JwtClaimToHeader {
            header_name: "x-jwt-sub".into(),
            claim_name: "sub".into(),
            ..Default::default()
        }],
        jwks_source_specifier: Some(jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(jwks.to_string())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Istio's shape: any of the providers, or no token at all.
fn filter(providers: Vec<(&str, JwtProvider)>, allow_missing: bool) -> JwtAuthn {
    let mut requirements: Vec<JwtRequirement> = providers
        .iter()
        .map(|(n, _)| JwtRequirement {
            requires_type: Some(jwt_requirement::RequiresType::ProviderName(n.to_string())),
        })
        .collect();
    if allow_missing {
        requirements.push(JwtRequirement {
            requires_type: Some(jwt_requirement::RequiresType::AllowMissing(Empty {})),
        });
    }
    let p = JwtAuthentication {
        providers: providers
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect(),
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(requirement_rule::RequirementType::Requires(
                JwtRequirement {
                    requires_type: Some(jwt_requirement::RequiresType::RequiresAny(
                        JwtRequirementOrList { requirements },
                    )),
                },
            )),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    };
    JwtAuthn::from_proto(&p, &|| "test".to_string()).unwrap()
}

fn run(
    f: &JwtAuthn,
    path: &str,
    headers: &[(&str, &str)],
) -> (Result<Option<Map<String, Value>>, Status>, HeaderMap) {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let r = JwtRequest {
        method: "GET",
        scheme: "http",
        authority: "api.example",
        path,
    };
    let out = authenticate(f, &r, &mut h);
    (out, h)
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"iss": ISS, "sub": "alice", "aud": "api.example", "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn a_good_token_gives_its_payload_and_headers_and_is_removed() {
    let s = Signer::new();
    let f = filter(
        vec![(ISS, provider(ISS, &json!({"keys": [s.jwk("k1")]})))],
        true,
    );
    let t = s.token("k1", claims(json!({"groups": ["admin"]})));
    let bearer = format!("Bearer {t}");
    let (out, h) = run(
        &f,
        "/",
        &[("authorization", &bearer), ("x-jwt-sub", "mallory")],
    );
    let md = out.unwrap().unwrap();
    assert_eq!(md["payload"]["sub"], "alice");
    assert_eq!(md["payload"]["groups"][0], "admin");
    assert_eq!(
        h["x-jwt-sub"], "alice",
        "the claim replaces what the client sent"
    );
    assert!(
        !h.contains_key("authorization"),
        "forward: false removes the token"
    );
    // A query parameter is a default location too.
    let (out, _) = run(&f, &format!("/p?access_token={t}"), &[]);
    assert!(out.unwrap().is_some());
}

#[test]
fn failures_get_envoys_status_in_envoys_order() {
    let s = Signer::new();
    let other = Signer::new();
    let f = filter(
        vec![(ISS, provider(ISS, &json!({"keys": [s.jwk("k1")]})))],
        true,
    );
    let check = |token: String| {
        let bearer = format!("Bearer {token}");
        run(&f, "/", &[("authorization", &bearer)]).0.unwrap_err()
    };
    assert_eq!(
        check(s.token("k1", claims(json!({"exp": now() - 3600})))),
        Status::Expired
    );
    assert_eq!(
        check(s.token("k1", claims(json!({"nbf": now() + 3600})))),
        Status::NotYetValid
    );
    // Within the 60 s clock skew is fine.
    assert!(run(
        &f,
        "/",
        &[(
            "authorization",
            &format!(
                "Bearer {}",
                s.token("k1", claims(json!({"exp": now() - 30})))
            )
        )]
    )
    .0
    .is_ok());
    assert_eq!(
        check(s.token("k1", claims(json!({"aud": "other"})))),
        Status::AudienceNotAllowed
    );
    assert_eq!(Status::AudienceNotAllowed.code(), 403);
    assert_eq!(
        check(s.token("k1", claims(json!({"iss": "https://evil.example"})))),
        Status::UnknownIssuer
    );
    assert_eq!(
        check(other.token("k1", claims(json!({})))),
        Status::VerificationFail
    );
    assert_eq!(
        check(s.token("k2", claims(json!({})))),
        Status::KidAlgMismatch
    );
    assert_eq!(check("garbage".into()), Status::BadFormat);
    assert_eq!(check("a.b.c".into()), Status::BadHeader);
    // Audience checked before the signature: a forged token with a wrong audience is 403.
    assert_eq!(
        check(other.token("k1", claims(json!({"aud": "other"})))),
        Status::AudienceNotAllowed
    );
    assert!(check("x.y.z".into()).code() == 401);
}

#[test]
fn missing_tokens_pass_only_beside_allow_missing() {
    let s = Signer::new();
    let lenient = filter(
        vec![(ISS, provider(ISS, &json!({"keys": [s.jwk("k1")]})))],
        true,
    );
    let strict = filter(
        vec![(ISS, provider(ISS, &json!({"keys": [s.jwk("k1")]})))],
        false,
    );
    assert_eq!(run(&lenient, "/", &[]).0.unwrap(), None);
    assert_eq!(run(&strict, "/", &[]).0.unwrap_err(), Status::Missed);
    // A non-Bearer Authorization header holds no token for this location.
    assert_eq!(
        run(&lenient, "/", &[("authorization", "Basic Zm9vOmJhcg==")])
            .0
            .unwrap(),
        None
    );
}

#[test]
fn two_issuers_each_verify_their_own_tokens_and_never_borrow_keys() {
    let a = Signer::new();
    let iss_b = "https://b.example";
    let f = filter(
        vec![
            (ISS, provider(ISS, &json!({"keys": [a.jwk("k1")]}))),
            // b's keys are unknown (the control plane could not fetch them): nothing of
            // b's verifies, and a's keys are not tried for it.
            (iss_b, provider(iss_b, &json!({"keys": []}))),
        ],
        true,
    );
    let ok = format!("Bearer {}", a.token("k1", claims(json!({}))));
    assert!(run(&f, "/", &[("authorization", &ok)]).0.unwrap().is_some());
    let signed_by_a_for_b = format!("Bearer {}", a.token("k1", claims(json!({"iss": iss_b}))));
    assert_eq!(
        run(&f, "/", &[("authorization", &signed_by_a_for_b)])
            .0
            .unwrap_err(),
        Status::NoValidKeys
    );
}

#[test]
fn hmac_keys_and_cors_preflights() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let jwks = json!({"keys": [{"kty": "oct", "k": b64e(secret), "alg": "HS256"}]});
    let f = filter(vec![(ISS, provider(ISS, &jwks))], false);
    let header = b64e(br#"{"alg":"HS256"}"#);
    let payload = b64e(claims(json!({})).to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        signed.as_bytes(),
    );
    let token = format!("Bearer {signed}.{}", b64e(tag.as_ref()));
    assert!(run(&f, "/", &[("authorization", &token)])
        .0
        .unwrap()
        .is_some());
    let mut h = HeaderMap::new();
    h.insert("origin", "https://web.example".parse().unwrap());
    h.insert("access-control-request-method", "POST".parse().unwrap());
    let r = JwtRequest {
        method: "OPTIONS",
        scheme: "http",
        authority: "api.example",
        path: "/",
    };
    assert_eq!(
        authenticate(&f, &r, &mut h).unwrap(),
        None,
        "preflights skip the filter"
    );
}
