//! Evaluating `envoy.filters.http.jwt_authn` for one request, the way Envoy does: the first
//! rule whose match fits the request names a requirement; each provider in it extracts
//! tokens from its locations and verifies them (issuer, time, audience, then signature,
//! in Envoy's order, so a token with several faults gets Envoy's answer); an
//! `allow_missing` child passes a request without a token.
//!
//! A verified token's payload becomes dynamic metadata for RBAC, and goes to the headers
//! the provider names; the token is removed unless `forward`. Failures are 401, or 403 for
//! an audience that is not allowed, with Envoy's `www-authenticate` header.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{hmac, signature};
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use crate::config::jwt::{
    normalize_audience, Extraction, JwtAuthn, Key, KeyKind, Location, Provider, Requirement,
};
use crate::route::RequestHead;

/// Why a token was not accepted (Envoy's `jwt_verify::Status`, the ones it can reach).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Missed,
    BadFormat,
    BadHeader,
    BadPayload,
    UnsupportedAlg,
    UnknownIssuer,
    NotYetValid,
    Expired,
    AudienceNotAllowed,
    NoValidKeys,
    KidAlgMismatch,
    VerificationFail,
}

impl Status {
    /// The status code of the local reply.
    pub fn code(self) -> u16 {
        if self == Status::AudienceNotAllowed {
            403
        } else {
            401
        }
    }

    /// The body of the local reply (Envoy's status strings).
    pub fn message(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Missed => "Jwt is missing",
            Status::BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            Status::BadHeader => "Jwt header is an invalid JSON",
            Status::BadPayload => "Jwt payload is an invalid JSON",
            Status::UnsupportedAlg => "Jwt header [alg] is not supported",
            Status::UnknownIssuer => "Jwt issuer is not configured",
            Status::NotYetValid => "Jwt not yet valid",
            Status::Expired => "Jwt is expired",
            Status::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            Status::NoValidKeys => "Jwks doesn't have valid keys",
            Status::KidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            Status::VerificationFail => "Jwt verification fails",
        }
    }
}

/// The request as jwt_authn sees it: the pseudo-headers routing uses.
pub struct JwtRequest<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub authority: &'a str,
    /// The normalized path, with the query.
    pub path: &'a str,
}

/// Runs the filter on a request. `Ok(metadata)`: go on, with the verified payloads by
/// `payload_in_metadata` key (`None` when no token was verified); `Err`: reply with it.
/// `headers` are changed here: tokens removed, payload headers set, spoofed ones dropped.
pub fn authenticate(
    f: &JwtAuthn,
    r: &JwtRequest<'_>,
    headers: &mut HeaderMap,
) -> Result<Option<Map<String, Value>>, Status> {
    let requirement = {
        let head = RequestHead {
            method: r.method,
            scheme: r.scheme,
            authority: r.authority,
            path: r.path,
            headers: &*headers,
            random: 0,
        };
        let preflight = r.method == "OPTIONS"
            && headers.contains_key(http::header::ORIGIN)
            && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if f.bypass_cors_preflight && preflight {
            return Ok(None);
        }
        match f
            .rules
            .iter()
            .find(|(m, _)| crate::route::route_matches(m, &head))
        {
            Some((_, req)) => req,
            None => return Ok(None),
        }
    };
    let mut run = Run {
        f,
        path: r.path,
        headers,
        now: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        payloads: Map::new(),
    };
    match run.requirement(requirement) {
        Status::Ok => Ok((!run.payloads.is_empty()).then_some(run.payloads)),
        failed => Err(failed),
    }
}

/// The `www-authenticate` value Envoy sends with a failure.
pub fn www_authenticate(scheme: &str, authority: &str, path: &str) -> Option<HeaderValue> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    HeaderValue::from_str(&format!(
        "Bearer realm=\"{scheme}://{authority}{path}\", error=\"invalid_token\""
    ))
    .ok()
}

struct Run<'a> {
    f: &'a JwtAuthn,
    path: &'a str,
    headers: &'a mut HeaderMap,
    now: u64,
    payloads: Map<String, Value>,
}

/// A token found in the request, with the issuers allowed at its location.
struct Token<'a> {
    value: String,
    issuers: &'a [String],
    /// The header it came from (removed after verification unless `forward`).
    header: Option<&'a str>,
}

impl<'a> Run<'a> {
    fn requirement(&mut self, r: &'a Requirement) -> Status {
        match r {
            Requirement::AllowAll => Status::Ok,
            Requirement::Provider(p, audiences, from) => {
                self.sanitize(from);
                let tokens = self.extract(from);
                self.tokens(tokens, Some(*p), audiences.as_deref(), false, false)
            }
            Requirement::AllowMissing(from) => {
                self.sanitize(from);
                let tokens = self.extract(from);
                self.tokens(tokens, None, None, false, true)
            }
            Requirement::AllowMissingOrFailed(from) => {
                self.sanitize(from);
                let tokens = self.extract(from);
                self.tokens(tokens, None, None, true, true)
            }
            // The last child's status when none passes, as Envoy.
            Requirement::Any(children) => {
                let mut last = Status::Ok;
                for c in children {
                    last = self.requirement(c);
                    if last == Status::Ok {
                        return Status::Ok;
                    }
                }
                last
            }
            Requirement::All(children) => children
                .iter()
                .map(|c| self.requirement(c))
                .find(|s| *s != Status::Ok)
                .unwrap_or(Status::Ok),
        }
    }

    /// Headers a provider writes are never taken from the client.
    fn sanitize(&mut self, from: &Extraction) {
        for h in &from.sanitize {
            self.headers.remove(h);
        }
    }

    /// The tokens at the requirement's locations, in Envoy's order.
    fn extract(&self, from: &'a Extraction) -> Vec<Token<'a>> {
        let mut tokens = Vec::new();
        for (location, issuers) in &from.locations {
            let (value, header) = match location {
                Location::Header(name, prefix) => {
                    let mut values = self.headers.get_all(name.as_str()).iter();
                    let Some(first) = values.next() else { continue };
                    let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
                    for v in values {
                        joined.push(',');
                        joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    }
                    let value = if prefix.is_empty() {
                        joined
                    } else {
                        let Some(at) = joined.find(prefix.as_str()) else {
                            continue;
                        };
                        joined[at + prefix.len()..].to_string()
                    };
                    (value, Some(name.as_str()))
                }
                Location::Param(name) => match query_param(self.path, name) {
                    Some(v) => (v, None),
                    None => continue,
                },
                Location::Cookie(name) => match super::filters::cookie(self.headers, name) {
                    Some(v) => (v, None),
                    None => continue,
                },
            };
            tokens.push(Token {
                value,
                issuers,
                header,
            });
        }
        tokens
    }

    /// Envoy's authenticator (1.40, checked against it): every token found must verify,
    /// tried last-found first, stopping at the first failure; with `failed_ok` failures
    /// are ignored. Each verified payload is written in turn, so the first-found wins.
    fn tokens(
        &mut self,
        mut tokens: Vec<Token<'a>>,
        provider: Option<usize>,
        audiences: Option<&[String]>,
        failed_ok: bool,
        missing_ok: bool,
    ) -> Status {
        if tokens.is_empty() {
            return if failed_ok || missing_ok {
                Status::Ok
            } else {
                Status::Missed
            };
        }
        while let Some(t) = tokens.pop() {
            let status = self.verify(&t, provider, audiences);
            if status != Status::Ok && !failed_ok {
                return status;
            }
        }
        Status::Ok
    }

    fn verify(
        &mut self,
        t: &Token<'a>,
        provider: Option<usize>,
        audiences: Option<&[String]>,
    ) -> Status {
        let jwt = match Jwt::parse(&t.value) {
            Ok(j) => j,
            Err(s) => return s,
        };
        let iss = jwt.payload.get("iss").and_then(Value::as_str).unwrap_or("");
        if !t.issuers.iter().any(|i| i.is_empty() || i == iss) {
            return Status::UnknownIssuer;
        }
        let p: &Provider = match provider {
            Some(i) => &self.f.providers[i],
            None => match self
                .f
                .providers
                .iter()
                .find(|p| p.issuer.is_empty() || p.issuer == iss)
            {
                Some(p) => p,
                None => return Status::UnknownIssuer,
            },
        };
        let skew = p.clock_skew_seconds;
        let time = |k: &str| jwt.payload.get(k).and_then(Value::as_u64).unwrap_or(0);
        if time("nbf") > self.now.saturating_add(skew) {
            return Status::NotYetValid;
        }
        let exp = time("exp");
        if exp > 0 && exp < self.now.saturating_sub(skew) {
            return Status::Expired;
        }
        let allowed = audiences.unwrap_or(&p.audiences);
        if !allowed.is_empty() && !jwt.audiences().any(|a| allowed.contains(&a)) {
            return Status::AudienceNotAllowed;
        }
        if p.keys.is_empty() {
            return Status::NoValidKeys;
        }
        let status = jwt.verify_signature(&p.keys);
        if status != Status::Ok {
            return status;
        }
        // A good token: its payload for the upstream and, last (moved, not copied), for
        // RBAC.
        if let Some(h) = &p.forward_payload_header {
            if let Ok(v) = HeaderValue::from_str(jwt.payload_b64) {
                self.headers.append(h.clone(), v);
            }
        }
        for (h, claim) in &p.claim_to_headers {
            let value = claim_value(&jwt.payload, claim);
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                self.headers.insert(h.clone(), v);
            }
        }
        if !p.forward {
            if let Some(h) = t.header {
                self.headers.remove(h);
            }
        }
        if let Some(key) = &p.payload_in_metadata {
            self.payloads
                .insert(key.clone(), Value::Object(jwt.payload));
        }
        Status::Ok
    }
}

/// A claim by dotted path, as a header value: strings as they are, numbers and booleans
/// printed; other kinds are not copied (Envoy's rule).
fn claim_value(payload: &Map<String, Value>, claim: &str) -> Option<String> {
    let mut parts = claim.split('.');
    let mut v = payload.get(parts.next()?)?;
    for k in parts {
        v = v.as_object()?.get(k)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first value of query parameter `name`, percent-decoded.
fn query_param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JWT split and decoded, not yet verified.
struct Jwt<'t> {
    alg: String,
    kid: Option<String>,
    payload: Map<String, Value>,
    payload_b64: &'t str,
    /// `header.payload`, what the signature covers.
    signed: &'t str,
    signature: Vec<u8>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

impl<'t> Jwt<'t> {
    fn parse(token: &'t str) -> Result<Self, Status> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Status::BadFormat);
        };
        let header: Map<String, Value> = b64(h)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Status::BadHeader)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(Status::BadHeader)?;
        if algorithm(alg).is_none() {
            return Err(Status::UnsupportedAlg);
        }
        let payload: Map<String, Value> = b64(p)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Status::BadPayload)?;
        // Envoy's payload checks: these claims, when present, have these types.
        let bad = |k: &str, ok: fn(&Value) -> bool| payload.get(k).is_some_and(|v| !ok(v));
        if bad("iss", Value::is_string)
            || bad("sub", Value::is_string)
            || bad("exp", |v| v.as_u64().is_some())
            || bad("nbf", |v| v.as_u64().is_some())
            || bad("iat", |v| v.as_u64().is_some())
            || bad("aud", |v| {
                v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            })
        {
            return Err(Status::BadPayload);
        }
        let signature = b64(s).ok_or(Status::BadFormat)?;
        Ok(Jwt {
            alg: alg.to_string(),
            kid: header
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_string),
            payload,
            payload_b64: p,
            signed: &token[..h.len() + 1 + p.len()],
            signature,
        })
    }

    fn audiences(&self) -> impl Iterator<Item = String> + '_ {
        let list: Vec<&str> = match self.payload.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        list.into_iter().map(normalize_audience)
    }

    /// Envoy's key selection: keys whose `kid` (when both have one) and `alg` (when the
    /// key has one) fit and whose type suits the algorithm are tried in order.
    fn verify_signature(&self, keys: &[Key]) -> Status {
        let Some(alg) = algorithm(&self.alg) else {
            return Status::UnsupportedAlg;
        };
        let mut tried = false;
        for k in keys {
            if matches!((&k.kid, &self.kid), (Some(a), Some(b)) if a != b) {
                continue;
            }
            if k.alg.as_deref().is_some_and(|a| a != self.alg) {
                continue;
            }
            let Some(ok) = alg.verify(&k.kind, self.signed.as_bytes(), &self.signature) else {
                continue;
            };
            tried = true;
            if ok {
                return Status::Ok;
            }
        }
        if tried {
            Status::VerificationFail
        } else {
            Status::KidAlgMismatch
        }
    }
}

#[derive(Clone, Copy)]
enum Alg {
    Rsa(&'static signature::RsaParameters),
    Ec(&'static str, &'static signature::EcdsaVerificationAlgorithm),
    Ed25519,
    Hmac(hmac::Algorithm),
}

fn algorithm(name: &str) -> Option<Alg> {
    Some(match name {
        "RS256" => Alg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => Alg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => Alg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => Alg::Rsa(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => Alg::Rsa(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => Alg::Rsa(&signature::RSA_PSS_2048_8192_SHA512),
        "ES256" => Alg::Ec("P-256", &signature::ECDSA_P256_SHA256_FIXED),
        "ES384" => Alg::Ec("P-384", &signature::ECDSA_P384_SHA384_FIXED),
        "ES512" => Alg::Ec("P-521", &signature::ECDSA_P521_SHA512_FIXED),
        "EdDSA" => Alg::Ed25519,
        "HS256" => Alg::Hmac(hmac::HMAC_SHA256),
        "HS384" => Alg::Hmac(hmac::HMAC_SHA384),
        "HS512" => Alg::Hmac(hmac::HMAC_SHA512),
        _ => return None,
    })
}

impl Alg {
    /// `None` when the key cannot be used with this algorithm.
    fn verify(self, key: &KeyKind, msg: &[u8], sig: &[u8]) -> Option<bool> {
        use signature::VerificationAlgorithm as _;
        match (self, key) {
            (Alg::Rsa(params), KeyKind::Rsa { n, e }) => Some(
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok(),
            ),
            (
                Alg::Ec(crv, alg),
                KeyKind::Ec {
                    crv: key_crv,
                    point,
                },
            ) if crv == key_crv => Some(
                signature::UnparsedPublicKey::new(alg, point)
                    .verify(msg, sig)
                    .is_ok(),
            ),
            (Alg::Ed25519, KeyKind::Ed25519(x)) => {
                Some(signature::ED25519.verify_sig(x, msg, sig).is_ok())
            }
            (Alg::Hmac(alg), KeyKind::Oct(secret)) => {
                Some(hmac::verify(&hmac::Key::new(alg, secret), msg, sig).is_ok())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
