//! `RequestAuthentication` → `envoy.filters.http.jwt_authn`.
//!
//! One provider per `jwtRules` entry (named by its issuer), and one requirement for every
//! request: any provider, or no token at all (`allow_missing`). So a request with an
//! invalid token (bad signature, expired, wrong audience, unknown issuer, malformed) gets
//! 401, and a request *without* a token passes: it simply has no request principal, and
//! only an `AuthorizationPolicy` that asks for one turns it away. Verified payloads go to
//! dynamic metadata under [`super::matchers::PAYLOAD_KEY`], where RBAC matches
//! `requestPrincipals` and `request.auth.*`.
//!
//! Keys are always pushed inline (`local_jwks`), never as a `remote_jwks` for the proxy to
//! fetch, as istiod does by default. `jwks` inline is passed as is. A `jwksUri` takes the
//! key set the control plane fetched for it ([`ConfigSet::resolved_jwks`]: translation
//! itself does no I/O, so the fetched keys are part of its input, set by `spar
//! control-plane` before it publishes a config; see `spar_xds::jwks`). A URI with no
//! fetched keys (never fetched successfully, or translation run offline by `spar ctl` and
//! `spar analyze`) gets [`REJECT_ALL_JWKS`], a key set whose private key nobody holds, so
//! every token for that issuer is rejected — never another issuer's keys (istiod does the
//! same when a fetch fails). [`jwks_uris`] lists what the control plane has to fetch.

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::config::route::v3::{route_match, RouteMatch};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider, jwt_requirement, requirement_rule, JwtAuthentication, JwtClaimToHeader,
    JwtHeader, JwtProvider, JwtRequirement, JwtRequirementOrList, RequirementRule,
};
use envoy_types::pb::google::protobuf::{Any, Empty};
use spar_model::istio::types::{JWTRule, RequestAuthentication};
use spar_model::{ConfigSet, Kind};

use super::matchers::PAYLOAD_KEY;

/// The JWKS for a rule whose keys are not known: a 2048-bit RSA public key whose private
/// half was discarded when it was generated, so no token verifies against it.
pub const REJECT_ALL_JWKS: &str = concat!(
    r#"{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"spar-unresolved-jwks","e":"AQAB","n":""#,
    "0XsFA_LirXlbBOM_8mya0gYOFmsGwWDN9fKOhCQOF_cKJgI2JnwISFqQfnWmNKlU3YGtbNr_b6qR1rLrGwU6iX09rgKzoTatEYd38bnimcJN06P_2yJdJkvzquaPdNI_RPgW0rcbIKcR-9_Bkh-zMLvU-s1j5x1cMVbHsbCuZUSQHHSbgCvCL4bXLbGE5Hl4S4jBQV89v8RKxdKVcmKz3vtwzWba9FJLt6867CN9HFnADQNECiLYxcWuskqIBn0gchvfVwLiL0mmaMcvGCW5dc0cIdAD4Lt-JqFeLo42aS-R_WCuIt8ahbxx9DDb7qfq2nbmQatOw923Hhrx0_DFyw",
    r#""}]}"#
);

/// Every `jwksUri` of a rule without inline `jwks` in `config` (each RequestAuthentication,
/// whichever proxies it applies to), with the longest fetch timeout its rules ask for
/// (`timeout`; `None` when none sets one, or it does not parse).
pub fn jwks_uris(config: &ConfigSet) -> BTreeMap<String, Option<Duration>> {
    let mut out: BTreeMap<String, Option<Duration>> = BTreeMap::new();
    let rules = config
        .of_kind(Kind::RequestAuthentication)
        .filter_map(|r| r.body.request_authentication())
        .flat_map(|ra| &ra.jwt_rules);
    for rule in rules {
        if rule.jwks.as_deref().is_some_and(|j| !j.is_empty()) {
            continue;
        }
        let Some(uri) = jwks_uri(rule) else { continue };
        let timeout = rule
            .timeout
            .as_deref()
            .and_then(|t| spar_model::duration::parse_duration(t).ok())
            .filter(|t| !t.is_zero());
        let slot = out.entry(uri.to_string()).or_default();
        *slot = (*slot).max(timeout);
    }
    out
}

/// The rule's `jwksUri` (or its proto spelling `jwks_uri`), when set and not empty.
fn jwks_uri(rule: &JWTRule) -> Option<&str> {
    rule.jwks_uri
        .as_deref()
        .or(rule.jwks_uri_snake.as_deref())
        .filter(|u| !u.is_empty())
}

/// The filter config for the RequestAuthentications that apply, in order; `None` when
/// no rule does. `resolved` holds the fetched key sets by `jwksUri`.
pub fn filter<'a>(
    policies: impl IntoIterator<Item = &'a RequestAuthentication>,
    resolved: &BTreeMap<String, String>,
) -> Option<Any> {
    let mut providers: BTreeMap<String, JwtProvider> = BTreeMap::new();
    for ra in policies {
        for rule in &ra.jwt_rules {
            let issuer = rule.issuer.clone().unwrap_or_default();
            let mut name = issuer.clone();
            let mut n = 1;
            while providers.contains_key(&name) {
                n += 1;
                name = format!("{issuer}#{n}");
            }
            providers.insert(name, provider(rule, resolved));
        }
    }
    if providers.is_empty() {
        return None;
    }
    let mut requirements: Vec<JwtRequirement> = providers
        .keys()
        .map(|p| JwtRequirement {
            requires_type: Some(jwt_requirement::RequiresType::ProviderName(p.clone())),
        })
        .collect();
    requirements.push(JwtRequirement {
        requires_type: Some(jwt_requirement::RequiresType::AllowMissing(Empty {})),
    });
    let base = JwtAuthentication {
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
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
    let entries: Vec<JwtAuthentication> = providers
        .into_iter()
        .map(|(k, v)| JwtAuthentication {
            providers: [(k, v)].into_iter().collect(),
            ..Default::default()
        })
        .collect();
    Some(super::encode::merged(&base, &entries))
}

fn provider(rule: &JWTRule, resolved: &BTreeMap<String, String>) -> JwtProvider {
    // Inline keys win (the schema forbids giving both); an inline set that is not usable
    // is not replaced by fetched keys either.
    let jwks = match rule.jwks.as_deref().filter(|j| !j.is_empty()) {
        Some(inline) => Some(inline),
        None => jwks_uri(rule)
            .and_then(|u| resolved.get(u))
            .map(String::as_str),
    }
    .filter(|j| usable_jwks(j))
    .unwrap_or(REJECT_ALL_JWKS);
    JwtProvider {
        issuer: rule.issuer.clone().unwrap_or_default(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token.unwrap_or(false),
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| JwtHeader {
                name: h.name.clone().unwrap_or_default(),
                value_prefix: h.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        payload_in_metadata: PAYLOAD_KEY.to_string(),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| JwtClaimToHeader {
                header_name: c.header.clone().unwrap_or_default(),
                claim_name: c.claim.clone().unwrap_or_default(),
                ..Default::default()
            })
            .collect(),
        jwks_source_specifier: Some(jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(jwks.to_string())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Whether inline keys look like a JWKS Envoy will load (a JSON object with a `keys`
/// list, or one bare key); anything else would make Envoy refuse the whole listener, so
/// such a rule gets [`REJECT_ALL_JWKS`] instead.
fn usable_jwks(text: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.get("keys").is_some_and(|k| k.is_array()) || v.get("kty").is_some(),
        Err(_) => false,
    }
}
