//! `envoy.filters.http.jwt_authn` as the proxy keeps it: providers (issuer, audiences,
//! where tokens are found, the keys, what to do with a verified payload) and the rules
//! that say which requirement applies to a request (`http::jwt` evaluates them).
//!
//! Keys come inline (`local_jwks`): the control plane fetches `jwksUri` and pushes the
//! keys, so the proxy never does I/O for a request. A `remote_jwks` provider, a
//! `requirement_map`, or anything else the proxy cannot evaluate is refused with a message
//! naming it, so the listener is NACKed and nothing passes unchecked.

use std::collections::BTreeMap;

use base64::Engine;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as pb;
use http::HeaderName;

use super::route::RouteMatch;
use super::ConfigError;

type Ctx<'a> = &'a dyn Fn() -> String;

/// The filter: providers by index, and the first matching rule's requirement applies.
#[derive(Debug, Clone)]
pub struct JwtAuthn {
    pub providers: Vec<Provider>,
    pub rules: Vec<(RouteMatch, Requirement)>,
    /// CORS preflights (OPTIONS with Origin and Access-Control-Request-Method) skip it.
    pub bypass_cors_preflight: bool,
}

/// One `JwtProvider`.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    /// Empty: tokens of any issuer (Envoy's rule for a provider without one).
    pub issuer: String,
    /// Normalized (see [`normalize_audience`]); empty: any audience.
    pub audiences: Vec<String>,
    /// Keep the token in the request after verifying it.
    pub forward: bool,
    pub locations: Vec<Location>,
    pub forward_payload_header: Option<HeaderName>,
    /// The dynamic-metadata key the verified payload goes to (RBAC reads it).
    pub payload_in_metadata: Option<String>,
    pub claim_to_headers: Vec<(HeaderName, String)>,
    pub keys: Vec<Key>,
    pub clock_skew_seconds: u64,
}

/// Where a token may be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// A header (lower-case name), with the value prefix (e.g. `Bearer `) the token
    /// follows.
    Header(String, String),
    Param(String),
    Cookie(String),
}

/// Envoy's `JwtRequirement`, providers by index.
#[derive(Debug, Clone)]
pub enum Requirement {
    /// A token of this provider must verify (with these audiences instead of the
    /// provider's, when given).
    Provider(usize, Option<Vec<String>>, Extraction),
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
    /// No token is fine; a token for one of the extraction's providers must verify.
    AllowMissing(Extraction),
    /// Anything is fine; verified tokens still give their payloads.
    AllowMissingOrFailed(Extraction),
    AllowAll,
}

/// Where one requirement looks for tokens, worked out when the config arrives: each
/// location once, in Envoy's order (headers, query parameters, cookies, each by name),
/// with the issuers whose providers name it; and the headers its providers write, which
/// are removed from the client's request first.
#[derive(Debug, Clone, Default)]
pub struct Extraction {
    pub locations: Vec<(Location, Vec<String>)>,
    pub sanitize: Vec<HeaderName>,
}

impl Extraction {
    fn of(providers: &[&Provider]) -> Extraction {
        let mut locations: BTreeMap<Location, Vec<String>> = BTreeMap::new();
        let mut sanitize = Vec::new();
        for p in providers {
            for l in &p.locations {
                locations
                    .entry(l.clone())
                    .or_default()
                    .push(p.issuer.clone());
            }
            sanitize.extend(p.forward_payload_header.iter().cloned());
            sanitize.extend(p.claim_to_headers.iter().map(|(h, _)| h.clone()));
        }
        Extraction {
            locations: locations.into_iter().collect(),
            sanitize,
        }
    }
}

/// A verification key from the JWKS.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub kind: KeyKind,
}

#[derive(Debug, Clone)]
pub enum KeyKind {
    /// Big-endian modulus and exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point (0x04 ‖ x ‖ y) on `crv` (`P-256`, `P-384`, `P-521`).
    Ec {
        crv: String,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
    /// An HMAC secret.
    Oct(Vec<u8>),
}

/// Envoy compares audiences without a `http://`/`https://` scheme and a trailing `/`.
pub fn normalize_audience(a: &str) -> String {
    let a = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))
        .unwrap_or(a);
    a.strip_suffix('/').unwrap_or(a).to_string()
}

impl JwtAuthn {
    pub fn from_proto(p: &pb::JwtAuthentication, what: Ctx<'_>) -> Result<Self, ConfigError> {
        if !p.requirement_map.is_empty() || p.filter_state_rules.is_some() {
            return Err(ConfigError::Unsupported {
                what: what(),
                feature: "jwt_authn requirement_map / filter_state_rules".into(),
            });
        }
        // Envoy's map, in name order so that evaluation is deterministic.
        let names: BTreeMap<&String, &pb::JwtProvider> = p.providers.iter().collect();
        let index: BTreeMap<&str, usize> = names
            .keys()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let providers = names
            .iter()
            .map(|(name, pr)| provider(name, pr, what))
            .collect::<Result<Vec<_>, _>>()?;
        let rules = p
            .rules
            .iter()
            .map(|r| {
                let m = RouteMatch::from_proto(r.r#match.as_ref(), what)?;
                let req = match &r.requirement_type {
                    Some(pb::requirement_rule::RequirementType::Requires(j)) => {
                        requirement(j, &index, &providers, &[], what)?
                    }
                    None => Requirement::AllowAll,
                    Some(_) => {
                        return Err(ConfigError::Unsupported {
                            what: what(),
                            feature: "jwt_authn requirement_name".into(),
                        })
                    }
                };
                Ok((m, req))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(JwtAuthn {
            providers,
            rules,
            bypass_cors_preflight: p.bypass_cors_preflight,
        })
    }
}

fn header_name(name: &str, what: Ctx<'_>) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| ConfigError::Invalid {
        what: what(),
        why: format!("jwt_authn header name {name:?} is not a valid header name"),
    })
}

fn provider(name: &str, p: &pb::JwtProvider, what: Ctx<'_>) -> Result<Provider, ConfigError> {
    use pb::jwt_provider::JwksSourceSpecifier;
    let what_p = || format!("{}: jwt provider {name:?}", what());
    let jwks = match &p.jwks_source_specifier {
        Some(JwksSourceSpecifier::LocalJwks(ds)) => match &ds.specifier {
            Some(Specifier::InlineString(s)) => s.clone(),
            Some(Specifier::InlineBytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => {
                return Err(ConfigError::Unsupported {
                    what: what_p(),
                    feature: "local_jwks from a file or environment variable".into(),
                })
            }
        },
        Some(JwksSourceSpecifier::RemoteJwks(_)) => {
            return Err(ConfigError::Unsupported {
                what: what_p(),
                feature:
                    "remote_jwks (the control plane fetches jwksUri and sends the keys inline)"
                        .into(),
            })
        }
        None => String::new(),
    };
    let mut locations = Vec::new();
    for h in &p.from_headers {
        locations.push(Location::Header(
            header_name(&h.name, &what_p)?.as_str().to_string(),
            h.value_prefix.clone(),
        ));
    }
    locations.extend(p.from_params.iter().cloned().map(Location::Param));
    locations.extend(p.from_cookies.iter().cloned().map(Location::Cookie));
    if locations.is_empty() {
        locations.push(Location::Header(
            "authorization".to_string(),
            "Bearer ".to_string(),
        ));
        locations.push(Location::Param("access_token".to_string()));
    }
    let optional_header = |h: &str| (!h.is_empty()).then(|| header_name(h, &what_p)).transpose();
    Ok(Provider {
        name: name.to_string(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.iter().map(|a| normalize_audience(a)).collect(),
        forward: p.forward,
        locations,
        forward_payload_header: optional_header(&p.forward_payload_header)?,
        payload_in_metadata: (!p.payload_in_metadata.is_empty())
            .then(|| p.payload_in_metadata.clone()),
        claim_to_headers: p
            .claim_to_headers
            .iter()
            .map(|c| Ok((header_name(&c.header_name, &what_p)?, c.claim_name.clone())))
            .collect::<Result<_, ConfigError>>()?,
        keys: keys(&jwks, name),
        clock_skew_seconds: if p.clock_skew_seconds == 0 {
            60
        } else {
            u64::from(p.clock_skew_seconds)
        },
    })
}

fn requirement(
    r: &pb::JwtRequirement,
    index: &BTreeMap<&str, usize>,
    providers: &[Provider],
    parent_providers: &[usize],
    what: Ctx<'_>,
) -> Result<Requirement, ConfigError> {
    use pb::jwt_requirement::RequiresType as T;
    let find = |name: &str| {
        index
            .get(name)
            .copied()
            .ok_or_else(|| ConfigError::Invalid {
                what: what(),
                why: format!("jwt requirement names provider {name:?}, which is not configured"),
            })
    };
    let parents = || {
        let ps: Vec<&Provider> = parent_providers.iter().map(|i| &providers[*i]).collect();
        Extraction::of(&ps)
    };
    Ok(match &r.requires_type {
        Some(T::ProviderName(n)) => {
            let i = find(n)?;
            Requirement::Provider(i, None, Extraction::of(&[&providers[i]]))
        }
        Some(T::ProviderAndAudiences(pa)) => {
            let i = find(&pa.provider_name)?;
            Requirement::Provider(
                i,
                Some(pa.audiences.iter().map(|a| normalize_audience(a)).collect()),
                Extraction::of(&[&providers[i]]),
            )
        }
        Some(T::RequiresAny(list)) => {
            // As Envoy: the providers named beside an allow_missing(_or_failed) are the
            // ones whose tokens it looks for, and that one child is evaluated last.
            let mut used = Vec::new();
            let mut children = Vec::new();
            let mut bypass: Option<&pb::JwtRequirement> = None;
            for c in &list.requirements {
                match &c.requires_type {
                    Some(T::AllowMissing(_)) => {
                        if bypass.is_none() {
                            bypass = Some(c);
                        }
                        continue;
                    }
                    Some(T::AllowMissingOrFailed(_)) => {
                        bypass = Some(c);
                        continue;
                    }
                    Some(T::ProviderName(n)) => used.push(find(n)?),
                    Some(T::ProviderAndAudiences(pa)) => used.push(find(&pa.provider_name)?),
                    _ => {}
                }
                children.push(requirement(c, index, providers, &[], what)?);
            }
            if let Some(b) = bypass {
                children.push(requirement(b, index, providers, &used, what)?);
            }
            Requirement::Any(children)
        }
        Some(T::RequiresAll(list)) => Requirement::All(
            list.requirements
                .iter()
                .map(|c| requirement(c, index, providers, &[], what))
                .collect::<Result<_, _>>()?,
        ),
        Some(T::AllowMissing(_)) => Requirement::AllowMissing(parents()),
        Some(T::AllowMissingOrFailed(_)) => Requirement::AllowMissingOrFailed(parents()),
        Some(T::ExtractOnlyWithoutValidation(_)) => {
            return Err(ConfigError::Unsupported {
                what: what(),
                feature: "jwt requirement extract_only_without_validation".into(),
            })
        }
        None => Requirement::AllowAll,
    })
}

/// The usable keys of a JWKS (or of one bare JWK). Keys of a kind the proxy does not
/// know are skipped, as Envoy skips them; a provider left with none rejects every token.
fn keys(jwks: &str, provider: &str) -> Vec<Key> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(jwks) else {
        if !jwks.is_empty() {
            tracing::warn!(
                provider,
                "jwt_authn: the provider's JWKS is not JSON; every token for it is rejected"
            );
        }
        return Vec::new();
    };
    let list: Vec<&serde_json::Value> = match v.get("keys").and_then(|k| k.as_array()) {
        Some(keys) => keys.iter().collect(),
        None if v.get("kty").is_some() => vec![&v],
        None => Vec::new(),
    };
    list.into_iter().filter_map(key).collect()
}

fn key(j: &serde_json::Value) -> Option<Key> {
    let s = |name: &str| j.get(name).and_then(|v| v.as_str());
    let b64 = |name: &str| {
        s(name).and_then(|v| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .ok()
        })
    };
    let kind = match s("kty")? {
        "RSA" => KeyKind::Rsa {
            n: b64("n")?,
            e: b64("e")?,
        },
        "EC" => {
            let mut point = vec![4u8];
            point.extend(b64("x")?);
            point.extend(b64("y")?);
            KeyKind::Ec {
                crv: s("crv")?.to_string(),
                point,
            }
        }
        "OKP" if s("crv") == Some("Ed25519") => KeyKind::Ed25519(b64("x")?),
        "oct" => KeyKind::Oct(b64("k")?),
        _ => return None,
    };
    Some(Key {
        kid: s("kid").map(str::to_string),
        alg: s("alg").map(str::to_string),
        kind,
    })
}
