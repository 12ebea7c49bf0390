//! Authorization and request authentication for Envoy: `AuthorizationPolicy` →
//! `envoy.filters.http.rbac` / `envoy.filters.network.rbac` (+ `ext_authz` for CUSTOM),
//! `RequestAuthentication` → `envoy.filters.http.jwt_authn`, MeshConfig
//! `pathNormalization` → the connection manager's path options.
//!
//! Evaluation order is Istio's: CUSTOM, then DENY, then ALLOW. Once any ALLOW policy
//! applies to a workload, a request no ALLOW rule matches is denied (403 with Envoy's
//! `RBAC: access denied` for HTTP, the connection closed for TCP). AUDIT rules become RBAC
//! `LOG` rules. Policies annotated `istio.io/dry-run: "true"` become shadow rules (stat
//! prefixes `istio_dry_run_allow_` / `istio_dry_run_deny_`) and enforce nothing.
//! Envoy policy names are istiod's, `ns[<ns>]-policy[<name>]-rule[<i>]`.
//!
//! A rule that cannot be translated fails closed: an ALLOW rule is dropped (it allows
//! nothing), a DENY rule becomes deny-everything, a CUSTOM policy whose provider is
//! missing denies everything it would have sent to the authorizer (all requests). On TCP
//! chains CUSTOM is enforced with an `envoyExtAuthzGrpc` provider (network ext_authz, one
//! check per connection); an `envoyExtAuthzHttp` provider leaves TCP chains alone, as
//! istiod does.
//!
//! | module | builds |
//! | --- | --- |
//! | `select` | which resources apply to the proxy |
//! | `rules` | one rule → one RBAC `Policy` |
//! | `matchers` | string, path, CIDR, header and JWT-claim matchers |
//! | `jwt` | the jwt_authn filter |
//! | `custom` | ext_authz for CUSTOM |
//! | `encode` | map-ordered `Any`s (deterministic bytes) |

mod custom;
mod encode;
mod jwt;
mod matchers;
mod rules;
mod select;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::config::rbac::v3::{rbac, Policy, Rbac};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use spar_model::istio::types::AuthorizationAction;
use spar_model::mesh::{ExtensionProvider, NormalizationType};
use spar_model::Kind;

pub use jwt::{jwks_uris, REJECT_ALL_JWKS};

use crate::Ctx;

pub const RBAC_FILTER: &str = "envoy.filters.http.rbac";
pub const NETWORK_RBAC_FILTER: &str = "envoy.filters.network.rbac";
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Why a rule could not be translated (the rule then fails closed, see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    #[error("ipBlocks entry {0:?} is not an IP address or CIDR range: write `10.0.0.0/8` or `192.168.1.1`")]
    BadIpBlock(String),
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    #[error("serviceAccounts entry {0:?} must be `<namespace>/<name>`")]
    BadServiceAccount(String),
    #[error("path template {0:?} is not valid: it must start with `/`, use `{{*}}` for one segment and at most one `{{**}}`")]
    BadPathTemplate(String),
    #[error("path template {0:?} is not enforced by Spar yet (Envoy aborts on it); the rule fails closed — write the path with `*` prefix/suffix instead")]
    UnsupportedPathTemplate(String),
    #[error("condition key {0:?} is not one Istio supports (request.headers[..], source.ip, remote.ip, source.namespace, source.principal, request.auth.*, destination.ip, destination.port, connection.sni)")]
    BadCondition(String),
    #[error("extension provider {0:?} is not envoyExtAuthzHttp or envoyExtAuthzGrpc; name one of those in the CUSTOM policy")]
    NotExtAuthz(String),
    #[error("extension provider {0:?} is not defined in MeshConfig extensionProviders")]
    UnknownProvider(String),
    #[error(
        "extension provider service {0:?} has no port; set `port` in MeshConfig extensionProviders"
    )]
    ProviderPort(String),
}

/// The filters a proxy's inbound (or gateway) chains get.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Authz {
    /// HTTP filters, in order, to put before the rest of the chain (CORS, fault, router).
    pub http: Vec<HttpFilter>,
    /// Network filters to put before `tcp_proxy` on TCP chains.
    pub tcp: Vec<Filter>,
}

/// RBAC policies for one action, enforced and dry-run.
#[derive(Default)]
struct Set {
    /// Whether any (enforced) policy of this action applies, even one without rules.
    present: bool,
    enforced: BTreeMap<String, Policy>,
    dry_run: BTreeMap<String, Policy>,
}

#[derive(Default)]
struct Plan {
    custom: BTreeMap<String, Policy>,
    custom_provider: Option<String>,
    deny: Set,
    allow: Set,
    audit: Set,
}

/// The authorization filters for `ctx`'s proxy.
pub fn build(ctx: &Ctx<'_>) -> Authz {
    let http = plan(ctx, true);
    let tcp = plan(ctx, false);
    let mut out = Authz::default();
    let ras = ctx
        .config
        .of_kind(Kind::RequestAuthentication)
        .filter_map(|r| {
            let ra = r.body.request_authentication()?;
            select::applies(
                ctx,
                r,
                ra.selector.as_ref(),
                ra.target_ref.as_ref(),
                &ra.target_refs,
            )
            .then_some(ra)
        });
    if let Some(cfg) = jwt::filter(ras, ctx.config.resolved_jwks()) {
        out.http.push(http_filter(matchers::JWT_FILTER, cfg));
    }
    if let Some(name) = &http.custom_provider {
        let ext = provider(ctx, name).and_then(custom::ext_authz);
        match ext {
            Ok(cfg) => {
                let shadow = rbac_rules(rbac::Action::Deny, &http.custom);
                let base = HttpRbac {
                    shadow_rules: Some(shadow.0),
                    shadow_rules_stat_prefix: custom::SHADOW_PREFIX.to_string(),
                    ..Default::default()
                };
                let entries: Vec<HttpRbac> = shadow
                    .1
                    .into_iter()
                    .map(|r| HttpRbac {
                        shadow_rules: Some(r),
                        ..Default::default()
                    })
                    .collect();
                out.http
                    .push(http_filter(RBAC_FILTER, encode::merged(&base, &entries)));
                out.http.push(http_filter(custom::EXT_AUTHZ_FILTER, cfg));
            }
            Err(_) => {
                // Fail closed: the requests the authorizer would have judged are denied.
                let rules = rbac_rules(rbac::Action::Deny, &http.custom);
                out.http
                    .push(http_filter(RBAC_FILTER, http_rbac(Some(rules), None, "")));
            }
        }
    }
    for (action, set, dry_prefix) in [
        (rbac::Action::Log, &http.audit, ""),
        (rbac::Action::Deny, &http.deny, "istio_dry_run_deny_"),
        (rbac::Action::Allow, &http.allow, "istio_dry_run_allow_"),
    ] {
        let rules = set.present.then(|| rbac_rules(action, &set.enforced));
        let shadow = (!set.dry_run.is_empty()).then(|| rbac_rules(action, &set.dry_run));
        if rules.is_some() || shadow.is_some() {
            out.http.push(http_filter(
                RBAC_FILTER,
                http_rbac(rules, shadow, dry_prefix),
            ));
        }
    }
    if let Some(name) = &tcp.custom_provider {
        let ext = provider(ctx, name).and_then(custom::network_ext_authz);
        match ext {
            Ok(Some(cfg)) => {
                let shadow = rbac_rules(rbac::Action::Deny, &tcp.custom);
                out.tcp
                    .push(network_rbac(None, Some(shadow), custom::SHADOW_PREFIX));
                out.tcp.push(Filter {
                    name: custom::NETWORK_EXT_AUTHZ_FILTER.to_string(),
                    config_type: Some(filter::ConfigType::TypedConfig(cfg)),
                });
            }
            // An HTTP authorizer cannot judge a TCP connection: istiod leaves TCP chains
            // alone then, and so does Spar.
            Ok(None) => {}
            Err(_) => {
                let rules = rbac_rules(rbac::Action::Deny, &tcp.custom);
                out.tcp.push(network_rbac(Some(rules), None, ""));
            }
        }
    }
    for (action, set, dry_prefix) in [
        (rbac::Action::Log, &tcp.audit, ""),
        (rbac::Action::Deny, &tcp.deny, "istio_dry_run_deny_"),
        (rbac::Action::Allow, &tcp.allow, "istio_dry_run_allow_"),
    ] {
        let rules = set.present.then(|| rbac_rules(action, &set.enforced));
        let shadow = (!set.dry_run.is_empty()).then(|| rbac_rules(action, &set.dry_run));
        if rules.is_some() || shadow.is_some() {
            out.tcp.push(network_rbac(rules, shadow, dry_prefix));
        }
    }
    out
}

/// The MeshConfig extension provider `name`.
fn provider<'c>(ctx: &'c Ctx<'_>, name: &str) -> Result<&'c ExtensionProvider, AuthzError> {
    ctx.config
        .mesh()
        .extension_providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| AuthzError::UnknownProvider(name.to_string()))
}

fn plan(ctx: &Ctx<'_>, http: bool) -> Plan {
    let mut plan = Plan::default();
    let mut policies: Vec<_> = ctx
        .config
        .of_kind(Kind::AuthorizationPolicy)
        .filter_map(|r| {
            let ap = r.body.authorization_policy()?;
            select::applies(
                ctx,
                r,
                ap.selector.as_ref(),
                ap.target_ref.as_ref(),
                &ap.target_refs,
            )
            .then_some((r, ap))
        })
        .collect();
    policies.sort_by(|a, b| (a.0.namespace(), a.0.name()).cmp(&(b.0.namespace(), b.0.name())));
    for (r, ap) in policies {
        let dry = r
            .meta
            .annotations
            .get(DRY_RUN_ANNOTATION)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let name = |i: usize| format!("ns[{}]-policy[{}]-rule[{i}]", r.namespace(), r.name());
        let action = ap.action.unwrap_or(AuthorizationAction::Allow);
        if action == AuthorizationAction::Custom {
            let provider = ap
                .provider
                .as_ref()
                .and_then(|p| p.name.clone())
                .unwrap_or_default();
            let first = plan.custom_provider.get_or_insert_with(|| provider.clone());
            if *first != provider || dry {
                // One provider per workload (as istiod); dry-run CUSTOM is not supported:
                // fail closed on what the policy selects.
                for (i, rule) in ap.rules.iter().enumerate() {
                    let mode = rules::Mode {
                        http,
                        deny_like: true,
                    };
                    let p = rules::policy(rule, mode).unwrap_or_else(|_| rules::match_all());
                    plan.deny.enforced.insert(name(i), p);
                    plan.deny.present = true;
                }
                continue;
            }
            for (i, rule) in ap.rules.iter().enumerate() {
                let mode = rules::Mode {
                    http,
                    deny_like: true,
                };
                let p = rules::policy(rule, mode).unwrap_or_else(|_| rules::match_all());
                plan.custom
                    .insert(format!("{}{}", custom::POLICY_PREFIX, name(i)), p);
            }
            continue;
        }
        let set = match action {
            AuthorizationAction::Allow => &mut plan.allow,
            AuthorizationAction::Deny => &mut plan.deny,
            _ => &mut plan.audit,
        };
        if !dry {
            set.present = true;
        }
        let target = if dry {
            &mut set.dry_run
        } else {
            &mut set.enforced
        };
        let deny_like = action != AuthorizationAction::Allow;
        for (i, rule) in ap.rules.iter().enumerate() {
            if action == AuthorizationAction::Allow && !http && rules::uses_http(rule) {
                continue;
            }
            match rules::policy(rule, rules::Mode { http, deny_like }) {
                Ok(p) => {
                    target.insert(name(i), p);
                }
                Err(_) if action == AuthorizationAction::Deny => {
                    target.insert(name(i), rules::match_all());
                }
                Err(_) => {}
            }
        }
    }
    plan
}

/// An `Rbac` without policies plus one single-policy `Rbac` per policy, for
/// [`encode::merged`].
fn rbac_rules(action: rbac::Action, policies: &BTreeMap<String, Policy>) -> (Rbac, Vec<Rbac>) {
    let base = Rbac {
        action: action as i32,
        ..Default::default()
    };
    let entries = policies
        .iter()
        .map(|(k, v)| Rbac {
            action: action as i32,
            policies: [(k.clone(), v.clone())].into_iter().collect(),
            ..Default::default()
        })
        .collect();
    (base, entries)
}

fn http_rbac(
    rules: Option<(Rbac, Vec<Rbac>)>,
    shadow: Option<(Rbac, Vec<Rbac>)>,
    dry_prefix: &str,
) -> Any {
    let mut base = HttpRbac::default();
    let mut entries = Vec::new();
    if let Some((b, es)) = rules {
        base.rules = Some(b);
        entries.extend(es.into_iter().map(|r| HttpRbac {
            rules: Some(r),
            ..Default::default()
        }));
    }
    if let Some((b, es)) = shadow {
        base.shadow_rules = Some(b);
        base.shadow_rules_stat_prefix = dry_prefix.to_string();
        entries.extend(es.into_iter().map(|r| HttpRbac {
            shadow_rules: Some(r),
            ..Default::default()
        }));
    }
    encode::merged(&base, &entries)
}

fn network_rbac(
    rules: Option<(Rbac, Vec<Rbac>)>,
    shadow: Option<(Rbac, Vec<Rbac>)>,
    dry_prefix: &str,
) -> Filter {
    let mut base = NetworkRbac {
        stat_prefix: "tcp.".to_string(),
        ..Default::default()
    };
    let mut entries = Vec::new();
    if let Some((b, es)) = rules {
        base.rules = Some(b);
        entries.extend(es.into_iter().map(|r| NetworkRbac {
            rules: Some(r),
            ..Default::default()
        }));
    }
    if let Some((b, es)) = shadow {
        base.shadow_rules = Some(b);
        base.shadow_rules_stat_prefix = dry_prefix.to_string();
        entries.extend(es.into_iter().map(|r| NetworkRbac {
            shadow_rules: Some(r),
            ..Default::default()
        }));
    }
    Filter {
        name: NETWORK_RBAC_FILTER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(encode::merged(
            &base, &entries,
        ))),
    }
}

fn http_filter(name: &str, cfg: Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(cfg)),
        ..Default::default()
    }
}

/// MeshConfig `pathNormalization` on a connection manager (inbound and gateways):
/// NONE: nothing; BASE (and DEFAULT): RFC 3986 normalization (`/a/../b` → `/b`);
/// MERGE_SLASHES: also `//` → `/`; DECODE_AND_MERGE_SLASHES: also `%2F`/`%5C` decoded
/// to `/` and `\` before routing and authorization.
pub fn normalize_paths(ctx: &Ctx<'_>, hcm: &mut HttpConnectionManager) {
    use http_connection_manager::PathWithEscapedSlashesAction as Escaped;
    let kind = ctx
        .config
        .mesh()
        .path_normalization
        .as_ref()
        .and_then(|p| p.normalization)
        .unwrap_or_default();
    let (normalize, merge, escaped) = match kind {
        NormalizationType::None => (false, false, None),
        NormalizationType::Default | NormalizationType::Base => (true, false, None),
        NormalizationType::MergeSlashes => (true, true, None),
        NormalizationType::DecodeAndMergeSlashes => (true, true, Some(Escaped::UnescapeAndForward)),
    };
    hcm.normalize_path = Some(BoolValue { value: normalize });
    hcm.merge_slashes = merge;
    if let Some(e) = escaped {
        hcm.path_with_escaped_slashes_action = e as i32;
    }
}
