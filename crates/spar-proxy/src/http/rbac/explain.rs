//! Why an RBAC filter decides what it decides, policy by policy (`spar ctl explain --to`).
//!
//! Every verdict here comes from the evaluation the proxy runs ([`super::permission`],
//! [`super::principal`], and [`super::check`] for the enforced decision); this module only
//! adds, for a policy that does not match, a short phrase saying which condition failed.

use serde_json::Value;

use super::{check, permission, principal, request_header, Decision, RbacInput};
use crate::config::matcher::{StrMatch, StringMatch};
use crate::config::metadata::{DoubleMatch, MetadataMatch, ValueMatch};
use crate::config::rbac::{Permission, Principal, RbacAction, RbacFilter, RbacRules};
use crate::config::route::{HeaderMatch, HeaderMatcher};

/// One policy of a rule set on one request.
#[derive(Debug, Clone)]
pub struct PolicyMatch<'r> {
    /// The Envoy policy name (istiod's `ns[<ns>]-policy[<name>]-rule[<i>]`).
    pub name: &'r str,
    /// Some permission matches (the `to` and `when` parts of an Istio rule).
    pub permission: bool,
    /// Some principal matches (the `from` and `when` parts of an Istio rule).
    pub principal: bool,
    /// For a policy that does not match: what failed, in a short phrase.
    pub why_not: Option<String>,
    /// It failed (in part) on a JWT condition while the request carried no verified token.
    pub needs_token: bool,
}

impl PolicyMatch<'_> {
    pub fn matches(&self) -> bool {
        self.permission && self.principal
    }
}

/// A rule set (enforced or shadow) on one request.
#[derive(Debug, Clone)]
pub struct RulesMatch<'r> {
    pub action: RbacAction,
    /// In evaluation order.
    pub policies: Vec<PolicyMatch<'r>>,
}

impl RulesMatch<'_> {
    /// The policy the proxy reports: the first that matches.
    pub fn first_match(&self) -> Option<&str> {
        self.policies.iter().find(|p| p.matches()).map(|p| p.name)
    }

    /// Whether these rules let the request through (ALLOW: some policy matches; DENY: none
    /// does; LOG: always).
    pub fn allowed(&self) -> bool {
        match self.action {
            RbacAction::Allow => self.first_match().is_some(),
            RbacAction::Deny => self.first_match().is_none(),
            RbacAction::Log => true,
        }
    }
}

/// An RBAC filter on one request.
#[derive(Debug, Clone)]
pub struct FilterMatch<'r> {
    pub enforced: Option<RulesMatch<'r>>,
    /// Dry-run rules: evaluated and logged, never enforced.
    pub shadow: Option<RulesMatch<'r>>,
    pub shadow_stat_prefix: &'r str,
    /// What the proxy does ([`super::check`]).
    pub decision: Decision,
}

/// `filter` on `input`, policy by policy.
pub fn explain<'r>(filter: &'r RbacFilter, input: &RbacInput<'_>) -> FilterMatch<'r> {
    FilterMatch {
        enforced: filter.rules.as_ref().map(|r| rules(r, input)),
        shadow: filter.shadow.as_ref().map(|r| rules(r, input)),
        shadow_stat_prefix: &filter.shadow_stat_prefix,
        decision: check(filter, input),
    }
}

fn rules<'r>(r: &'r RbacRules, input: &RbacInput<'_>) -> RulesMatch<'r> {
    let policies = r
        .policies
        .iter()
        .map(|(name, p)| {
            let perm = p.permissions.iter().any(|x| permission(x, input));
            let princ = p.principals.iter().any(|x| principal(x, input));
            let mut needs_token = false;
            let mut why = Vec::new();
            if !perm {
                why.push(or_misses(
                    p.permissions.iter().map(|x| perm_miss(x, input)).collect(),
                ));
            }
            if !princ {
                let mut ctx = Ctx {
                    input,
                    needs_token: false,
                };
                let misses = p
                    .principals
                    .iter()
                    .map(|x| princ_miss(x, &mut ctx))
                    .collect();
                why.push(or_misses(misses));
                needs_token = ctx.needs_token;
            }
            let why: Vec<String> = why.into_iter().flatten().map(|m| m.render()).collect();
            PolicyMatch {
                name,
                permission: perm,
                principal: princ,
                why_not: (!why.is_empty()).then(|| why.join("; and ")),
                needs_token,
            }
        })
        .collect();
    RulesMatch {
        action: r.action,
        policies,
    }
}

/// A failed condition: what the request had, and what was wanted (or that it was
/// excluded by a `not...` value).
#[derive(Debug, Clone, PartialEq)]
struct Miss {
    had: String,
    wants: Vec<String>,
    excluded: bool,
}

impl Miss {
    fn new(had: String, want: String) -> Miss {
        Miss {
            had,
            wants: vec![want],
            excluded: false,
        }
    }

    fn render(&self) -> String {
        if self.excluded {
            return format!("{} is excluded", self.had);
        }
        if self.wants.is_empty() {
            return self.had.clone();
        }
        format!("{}, wants {}", self.had, self.wants.join(" or "))
    }
}

/// All of `misses` failed (an OR): merged when they are about the same thing.
fn or_misses(misses: Vec<Option<Miss>>) -> Option<Miss> {
    let misses: Vec<Miss> = misses.into_iter().flatten().collect();
    let first = misses.first()?.clone();
    if misses.iter().all(|m| m.had == first.had && !m.excluded) {
        let mut wants: Vec<String> = Vec::new();
        for w in misses.into_iter().flat_map(|m| m.wants) {
            if !wants.contains(&w) {
                wants.push(w);
            }
        }
        return Some(Miss {
            had: first.had,
            wants,
            excluded: false,
        });
    }
    // Different conditions: name the first (the others are alternatives that failed too).
    Some(first)
}

fn perm_miss(p: &Permission, input: &RbacInput<'_>) -> Option<Miss> {
    if permission(p, input) {
        return None;
    }
    match p {
        Permission::Any => None,
        Permission::And(all) => all.iter().find_map(|x| perm_miss(x, input)),
        Permission::Or(any) => or_misses(any.iter().map(|x| perm_miss(x, input)).collect()),
        Permission::Not(x) => Some(Miss {
            had: perm_had(x, input),
            wants: Vec::new(),
            excluded: true,
        }),
        Permission::Header(h) => Some(header_miss(h, input)),
        Permission::UrlPath(m) => Some(Miss::new(
            perm_had(p, input),
            format!("path {}", pattern(m)),
        )),
        Permission::DestinationIp(net) => Some(Miss::new(
            perm_had(p, input),
            format!("destination ip {net}"),
        )),
        Permission::DestinationPort(port) => {
            Some(Miss::new(perm_had(p, input), format!("port {port}")))
        }
        Permission::RequestedServerName(m) => {
            Some(Miss::new(perm_had(p, input), format!("SNI {}", pattern(m))))
        }
    }
}

/// What the request has for the first condition of `p` (for an excluded value).
fn perm_had(p: &Permission, input: &RbacInput<'_>) -> String {
    match p {
        Permission::Any => "anything".into(),
        Permission::And(xs) | Permission::Or(xs) => xs
            .first()
            .map_or_else(|| "nothing".into(), |x| perm_had(x, input)),
        Permission::Not(x) => perm_had(x, input),
        Permission::Header(h) => header_had(h, input),
        Permission::UrlPath(_) => match input.head {
            Some(h) => {
                let end = h.path.find(['?', '#']).unwrap_or(h.path.len());
                format!("path {:?}", &h.path[..end])
            }
            None => "no HTTP request (TCP): no path".into(),
        },
        Permission::DestinationIp(_) => format!("destination ip {}", input.dst.ip()),
        Permission::DestinationPort(_) => format!("port {}", input.dst.port()),
        Permission::RequestedServerName(_) => format!("SNI {:?}", input.sni),
    }
}

/// The Istio word for a header RBAC matches on.
fn header_kind(name: &str) -> String {
    match name {
        ":method" => "method".into(),
        ":authority" | "host" => "host".into(),
        ":path" => "path".into(),
        other => format!("header {other}"),
    }
}

fn header_had(h: &HeaderMatcher, input: &RbacInput<'_>) -> String {
    let kind = header_kind(&h.name);
    match input.head {
        None => format!("no HTTP request (TCP): no {kind}"),
        Some(head) => match request_header(head, &h.name) {
            Some(v) => format!("{kind} {v:?}"),
            None => format!("{kind} absent"),
        },
    }
}

fn header_miss(h: &HeaderMatcher, input: &RbacInput<'_>) -> Miss {
    let had = header_had(h, input);
    if h.invert {
        return Miss {
            had,
            wants: Vec::new(),
            excluded: true,
        };
    }
    let want = match &h.matcher {
        HeaderMatch::String(s) => pattern(s),
        HeaderMatch::Present(true) => "present".into(),
        HeaderMatch::Present(false) => "absent".into(),
        HeaderMatch::Range(a, b) => format!("in [{a}, {b})"),
    };
    Miss::new(had, format!("{} {want}", header_kind(&h.name)))
}

struct Ctx<'a, 'b> {
    input: &'a RbacInput<'b>,
    needs_token: bool,
}

fn princ_miss(p: &Principal, ctx: &mut Ctx<'_, '_>) -> Option<Miss> {
    if principal(p, ctx.input) {
        return None;
    }
    match p {
        Principal::Any => None,
        Principal::And(all) => all.iter().find_map(|x| princ_miss(x, ctx)),
        Principal::Or(any) => {
            let misses = any.iter().map(|x| princ_miss(x, ctx)).collect();
            or_misses(misses)
        }
        Principal::Not(x) => Some(Miss {
            had: princ_had(x, ctx.input),
            wants: Vec::new(),
            excluded: true,
        }),
        Principal::Authenticated(m) => {
            let want = m
                .as_ref()
                .map_or_else(|| "a peer identity".into(), identity);
            Some(Miss::new(princ_had(p, ctx.input), want))
        }
        Principal::DirectRemoteIp(net) => Some(Miss::new(
            princ_had(p, ctx.input),
            format!("ipBlocks {net}"),
        )),
        Principal::RemoteIp(net) => Some(Miss::new(
            princ_had(p, ctx.input),
            format!("remoteIpBlocks {net}"),
        )),
        Principal::Header(h) => Some(header_miss(h, ctx.input)),
        Principal::Metadata(m) => {
            if ctx.input.jwt.is_none() {
                ctx.needs_token = true;
            }
            let had = princ_had(p, ctx.input);
            if m.invert {
                return Some(Miss {
                    had,
                    wants: Vec::new(),
                    excluded: true,
                });
            }
            Some(Miss::new(
                had,
                format!("{} {}", claim_name(m), value(&m.value)),
            ))
        }
    }
}

fn princ_had(p: &Principal, input: &RbacInput<'_>) -> String {
    match p {
        Principal::Any => "anyone".into(),
        Principal::And(xs) | Principal::Or(xs) => xs
            .first()
            .map_or_else(|| "nobody".into(), |x| princ_had(x, input)),
        Principal::Not(x) => princ_had(x, input),
        Principal::Authenticated(_) => match input.peer_principal {
            None => "no peer identity (plaintext, no client certificate)".into(),
            Some(p) => format!("peer {p:?}"),
        },
        Principal::DirectRemoteIp(_) => format!("source ip {}", input.direct_remote),
        Principal::RemoteIp(_) => format!("remote ip {}", input.remote),
        Principal::Header(h) => header_had(h, input),
        Principal::Metadata(m) => match input.jwt {
            None => "no JWT on the request".into(),
            Some(md) => {
                let mut keys = m.path.iter();
                let found = keys.next().and_then(|first| {
                    let root = md.get(first)?;
                    keys.try_fold(root, |v, k| v.as_object()?.get(k))
                });
                match found {
                    Some(v) => format!("{} {}", claim_name(m), json(v)),
                    None => format!("{} absent", claim_name(m)),
                }
            }
        },
    }
}

/// `["payload", "iss"]` → `claim iss`.
fn claim_name(m: &MetadataMatch) -> String {
    let claim: Vec<&str> = m.path.iter().skip(1).map(String::as_str).collect();
    format!("claim {}", claim.join("."))
}

fn json(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn value(v: &ValueMatch) -> String {
    match v {
        ValueMatch::Null => "null".into(),
        ValueMatch::Double(DoubleMatch::Exact(x)) => format!("{x}"),
        ValueMatch::Double(DoubleMatch::Range(a, b)) => format!("in [{a}, {b})"),
        ValueMatch::String(s) => pattern(s),
        ValueMatch::Bool(b) => b.to_string(),
        ValueMatch::Present(_) => "present".into(),
        ValueMatch::OneOf(inner) => format!("containing {}", value(inner)),
        // A claim as a string or as a list holding it (how requestPrincipals and
        // request.auth.claims are translated): said once.
        ValueMatch::Or(xs) => match xs.as_slice() {
            [ValueMatch::String(a), ValueMatch::OneOf(b)] if pattern(a) == value(b) => pattern(a),
            _ => xs.iter().map(value).collect::<Vec<_>>().join(" or "),
        },
    }
}

/// A string pattern as an Istio user writes it: `"/a"`, `"/a*"`, `"*.b"`, `~regex`.
fn pattern(m: &StringMatch) -> String {
    let s = match &m.pattern {
        StrMatch::Exact(s) => format!("{s:?}"),
        StrMatch::Prefix(s) => format!("{:?}", format!("{s}*")),
        StrMatch::Suffix(s) => format!("{:?}", format!("*{s}")),
        StrMatch::Contains(s) => format!("containing {s:?}"),
        StrMatch::Regex(re) => format!("~{}", bare_regex(re.as_str())),
    };
    if m.ignore_case {
        format!("{s} (any case)")
    } else {
        s
    }
}

/// `^(?:re)$` (how full matches are compiled) → `re`.
fn bare_regex(re: &str) -> &str {
    re.strip_prefix("^(?:")
        .and_then(|r| r.strip_suffix(")$"))
        .unwrap_or(re)
}

/// The Istio source field a peer-identity matcher comes from, as the translator builds
/// them: `namespaces`, `serviceAccounts`, `trustDomains`, `principals`.
fn identity(m: &StringMatch) -> String {
    let unescape = |s: &str| s.replace('\\', "");
    match &m.pattern {
        StrMatch::Regex(re) => {
            let re = bare_regex(re.as_str());
            if re == ".+" {
                return "any peer identity (mTLS)".into();
            }
            if let Some(ns) = re
                .strip_prefix(".*/ns/")
                .and_then(|r| r.strip_suffix("/.*"))
            {
                return format!("namespace {}", unescape(&ns.replace(".*", "*")));
            }
            if let Some(rest) = re.strip_prefix("spiffe://[^/]+/ns/") {
                if let Some((ns, sa)) = rest.split_once("/sa/") {
                    return format!("service account {}/{}", unescape(ns), unescape(sa));
                }
            }
            if let Some(td) = re
                .strip_prefix("spiffe://")
                .and_then(|r| r.strip_suffix("/.*"))
            {
                return format!("trust domain {}", unescape(&td.replace(".*", "*")));
            }
            format!("principal ~{re}")
        }
        _ => format!("principal {}", pattern(m)),
    }
}
