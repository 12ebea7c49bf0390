//! `envoy.filters.http.rbac` and `envoy.filters.network.rbac` as the proxy keeps them: the enforced rules and the shadow
//! (dry-run) rules, each an action and named policies of permissions and principals.
//!
//! The subset is what istiod and Spar's translator emit for AuthorizationPolicy, JWT
//! metadata principals included (`config::metadata`). Anything else is refused with a
//! message naming it, so the listener is NACKed: an authorization filter the proxy cannot
//! evaluate never lets traffic through unchecked.

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3 as pb;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::path_matcher;

use super::matcher::StringMatch;
use super::metadata::MetadataMatch;
use super::route::HeaderMatcher;
use super::ConfigError;

/// What a matching policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacAction {
    /// Allowed only if some policy matches.
    Allow,
    /// Denied if some policy matches.
    Deny,
    /// Allowed either way; a match is logged (Istio's AUDIT).
    Log,
}

/// One RBAC rule set: the action and its policies, by name.
#[derive(Debug, Clone)]
pub struct RbacRules {
    pub action: RbacAction,
    pub policies: Vec<(String, RbacPolicy)>,
    /// Which policies a path can match (from their path gates).
    pub index: super::rbac_index::PathIndex,
}

/// A policy matches when any permission and any principal match.
#[derive(Debug, Clone)]
pub struct RbacPolicy {
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

impl RbacPolicy {
    /// `Some(paths)` when the policy can only match a request whose path (without query)
    /// is one of these: what [`super::rbac_index::PathIndex`] is built from, so most
    /// policies are ruled out without walking their matchers.
    pub fn path_gate(&self) -> Option<Vec<PathLiteral>> {
        any_gate(&self.permissions)
    }
}

/// A path a policy needs, exactly or as a prefix (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathLiteral {
    Exact(String),
    Prefix(String),
}

impl PathLiteral {
    pub fn admits(&self, path: &str) -> bool {
        match self {
            PathLiteral::Exact(p) => path == p,
            PathLiteral::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// The paths `p` needs (a necessary condition, never a sufficient one): `None` when it
/// can match without a literal path.
fn path_gate(p: &Permission) -> Option<Vec<PathLiteral>> {
    use super::matcher::StrMatch;
    match p {
        Permission::UrlPath(StringMatch {
            pattern: StrMatch::Exact(s),
            ignore_case: false,
        }) => Some(vec![PathLiteral::Exact(s.clone())]),
        Permission::UrlPath(StringMatch {
            pattern: StrMatch::Prefix(s),
            ignore_case: false,
        }) => Some(vec![PathLiteral::Prefix(s.clone())]),
        // All must hold: any one's requirement is the whole's.
        Permission::And(all) => all.iter().find_map(path_gate),
        // One must hold: the union, if every one has a requirement.
        Permission::Or(any) => any_gate(any),
        _ => None,
    }
}

fn any_gate(any: &[Permission]) -> Option<Vec<PathLiteral>> {
    let mut out = Vec::new();
    for p in any {
        out.extend(path_gate(p)?);
    }
    (!out.is_empty()).then_some(out)
}

/// What the request does.
#[derive(Debug, Clone)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Header(HeaderMatcher),
    /// The path without its query.
    UrlPath(StringMatch),
    DestinationIp(ipnet::IpNet),
    DestinationPort(u16),
    /// The SNI the client sent in its TLS ClientHello (empty without TLS).
    RequestedServerName(StringMatch),
}

/// Who asks.
#[derive(Debug, Clone)]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// A client certificate was presented; with a name, its URI SAN (else DNS SAN, else
    /// subject) must match.
    Authenticated(Option<StringMatch>),
    /// The connection's peer address.
    DirectRemoteIp(ipnet::IpNet),
    /// The client address as the connection manager determined it (x-forwarded-for).
    RemoteIp(ipnet::IpNet),
    Header(HeaderMatcher),
    /// The request's dynamic metadata: a verified JWT payload (requestPrincipals,
    /// request.auth.*).
    Metadata(MetadataMatch),
}

/// An RBAC filter (HTTP or network): enforced rules (none: everything allowed) and shadow
/// rules.
#[derive(Debug, Clone)]
pub struct RbacFilter {
    pub rules: Option<RbacRules>,
    pub shadow: Option<RbacRules>,
    pub shadow_stat_prefix: String,
}

type Ctx<'a> = &'a dyn Fn() -> String;

fn unsupported(what: Ctx<'_>, feature: &str) -> ConfigError {
    ConfigError::Unsupported {
        what: what(),
        feature: format!("RBAC {feature}"),
    }
}

impl RbacFilter {
    pub fn from_proto(p: &HttpRbac, what: Ctx<'_>) -> Result<Self, ConfigError> {
        let matchers = p.matcher.is_some() || p.shadow_matcher.is_some();
        Self::build(
            matchers,
            &p.rules,
            &p.shadow_rules,
            &p.shadow_rules_stat_prefix,
            what,
        )
    }

    fn build(
        matchers: bool,
        enforced: &Option<pb::Rbac>,
        shadow: &Option<pb::Rbac>,
        shadow_stat_prefix: &str,
        what: Ctx<'_>,
    ) -> Result<Self, ConfigError> {
        if matchers {
            return Err(unsupported(what, "matcher trees (use rules)"));
        }
        Ok(RbacFilter {
            rules: enforced.as_ref().map(|r| rules(r, what)).transpose()?,
            shadow: shadow.as_ref().map(|r| rules(r, what)).transpose()?,
            shadow_stat_prefix: shadow_stat_prefix.to_string(),
        })
    }
}

impl RbacFilter {
    /// The network filter, checked once per connection before any byte is forwarded.
    pub fn from_network_proto(p: &NetworkRbac, what: Ctx<'_>) -> Result<Self, ConfigError> {
        let matchers = p.matcher.is_some() || p.shadow_matcher.is_some();
        Self::build(
            matchers,
            &p.rules,
            &p.shadow_rules,
            &p.shadow_rules_stat_prefix,
            what,
        )
    }
}

fn rules(r: &pb::Rbac, what: Ctx<'_>) -> Result<RbacRules, ConfigError> {
    let action = match pb::rbac::Action::try_from(r.action) {
        Ok(pb::rbac::Action::Allow) => RbacAction::Allow,
        Ok(pb::rbac::Action::Deny) => RbacAction::Deny,
        Ok(pb::rbac::Action::Log) => RbacAction::Log,
        Err(_) => return Err(unsupported(what, &format!("action {}", r.action))),
    };
    // Evaluated in name order, as Envoy's map; the first match is the one reported.
    let mut names: Vec<&String> = r.policies.keys().collect();
    names.sort();
    let policies: Vec<(String, RbacPolicy)> = names
        .into_iter()
        .map(|name| {
            let p = &r.policies[name];
            if p.condition.is_some() || p.checked_condition.is_some() {
                return Err(unsupported(what, &format!("policy {name}: CEL conditions")));
            }
            let permissions: Vec<Permission> = p
                .permissions
                .iter()
                .map(|x| permission(x, what))
                .collect::<Result<_, _>>()?;
            Ok((
                name.clone(),
                RbacPolicy {
                    permissions,
                    principals: p
                        .principals
                        .iter()
                        .map(|x| principal(x, what))
                        .collect::<Result<_, _>>()?,
                },
            ))
        })
        .collect::<Result<_, _>>()?;
    let index = super::rbac_index::PathIndex::build(&policies);
    Ok(RbacRules {
        action,
        policies,
        index,
    })
}

fn cidr(c: &CidrRange, what: Ctx<'_>) -> Result<ipnet::IpNet, ConfigError> {
    let ip: std::net::IpAddr = c.address_prefix.parse().map_err(|_| ConfigError::Invalid {
        what: what(),
        why: format!(
            "RBAC CIDR address {:?} is not an IP address",
            c.address_prefix
        ),
    })?;
    let len = c
        .prefix_len
        .as_ref()
        .map_or(if ip.is_ipv4() { 32 } else { 128 }, |v| {
            u8::try_from(v.value).unwrap_or(255)
        });
    ipnet::IpNet::new(ip, len).map_err(|_| ConfigError::Invalid {
        what: what(),
        why: format!(
            "RBAC CIDR {}/{len}: prefix length out of range",
            c.address_prefix
        ),
    })
}

fn permission(p: &pb::Permission, what: Ctx<'_>) -> Result<Permission, ConfigError> {
    use pb::permission::Rule;
    let all = |rules: &[pb::Permission]| -> Result<Vec<Permission>, ConfigError> {
        rules.iter().map(|r| permission(r, what)).collect()
    };
    Ok(match &p.rule {
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::AndRules(s)) => Permission::And(all(&s.rules)?),
        Some(Rule::OrRules(s)) => Permission::Or(all(&s.rules)?),
        Some(Rule::NotRule(r)) => Permission::Not(Box::new(permission(r, what)?)),
        Some(Rule::Header(h)) => Permission::Header(super::route_proto::header_matcher(h, what)?),
        Some(Rule::UrlPath(m)) => match &m.rule {
            Some(path_matcher::Rule::Path(s)) => {
                Permission::UrlPath(StringMatch::from_proto(s, what)?)
            }
            None => return Err(unsupported(what, "url_path without a path")),
        },
        Some(Rule::DestinationIp(c)) => Permission::DestinationIp(cidr(c, what)?),
        Some(Rule::DestinationPort(port)) => {
            Permission::DestinationPort(u16::try_from(*port).map_err(|_| ConfigError::Invalid {
                what: what(),
                why: format!("RBAC destination_port {port} is above 65535"),
            })?)
        }
        Some(Rule::RequestedServerName(m)) => {
            Permission::RequestedServerName(StringMatch::from_proto(m, what)?)
        }
        Some(other) => {
            return Err(unsupported(
                what,
                &format!("permission {}", rule_name(other)),
            ))
        }
        None => return Err(unsupported(what, "permission with no rule")),
    })
}

#[allow(deprecated)] // `metadata` is deprecated in favour of `sourced_metadata`
fn rule_name(r: &pb::permission::Rule) -> &'static str {
    use pb::permission::Rule;
    match r {
        Rule::Any(_) => "any: false",
        Rule::Metadata(_) => "metadata",
        Rule::DestinationPortRange(_) => "destination_port_range",
        Rule::Matcher(_) => "matcher extension",
        Rule::UriTemplate(_) => "uri_template",
        _ => "of this kind",
    }
}

fn principal(p: &pb::Principal, what: Ctx<'_>) -> Result<Principal, ConfigError> {
    use pb::principal::Identifier;
    let all = |ids: &[pb::Principal]| -> Result<Vec<Principal>, ConfigError> {
        ids.iter().map(|r| principal(r, what)).collect()
    };
    #[allow(deprecated)] // source_ip still arrives from older control planes
    Ok(match &p.identifier {
        Some(Identifier::Any(true)) => Principal::Any,
        Some(Identifier::AndIds(s)) => Principal::And(all(&s.ids)?),
        Some(Identifier::OrIds(s)) => Principal::Or(all(&s.ids)?),
        Some(Identifier::NotId(r)) => Principal::Not(Box::new(principal(r, what)?)),
        Some(Identifier::Authenticated(a)) => Principal::Authenticated(
            a.principal_name
                .as_ref()
                .map(|m| StringMatch::from_proto(m, what))
                .transpose()?,
        ),
        Some(Identifier::DirectRemoteIp(c) | Identifier::SourceIp(c)) => {
            Principal::DirectRemoteIp(cidr(c, what)?)
        }
        Some(Identifier::RemoteIp(c)) => Principal::RemoteIp(cidr(c, what)?),
        Some(Identifier::Header(h)) => {
            Principal::Header(super::route_proto::header_matcher(h, what)?)
        }
        Some(Identifier::Metadata(m)) => Principal::Metadata(MetadataMatch::from_proto(m, what)?),
        Some(_) => return Err(unsupported(what, "principal of this kind")),
        None => return Err(unsupported(what, "principal with no identifier")),
    })
}
