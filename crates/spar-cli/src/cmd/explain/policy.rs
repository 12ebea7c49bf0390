//! `spar ctl explain --to <proxy> <url>`: how the destination proxy authorizes one request.
//!
//! The destination's chain is picked with `spar_proxy::listener::chain::select`, the path
//! normalized with `spar_proxy::http::path::normalize`, and every RBAC filter of the chain
//! evaluated with `spar_proxy::http::rbac::explain` (the proxy's own matching, policy by
//! policy), in filter order, as the proxy runs them: the first filter that denies decides.
//!
//! The JWT is not verified: its claims come from the command line and are taken as the
//! payload jwt_authn would have put in metadata, for the provider of their issuer.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::{bail, Context};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, Listener as PbListener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use prost::Message;
use serde_json::{Map, Value};
use spar_proxy::config::listener::{FilterChain, Listener, NetworkFilter};
use spar_proxy::config::rbac::{RbacAction, RbacFilter};
use spar_proxy::http::rbac::explain::{explain, RulesMatch};
use spar_proxy::http::rbac::{remote_address, Decision, RbacInput};
use spar_proxy::listener::chain::{self, ConnInfo};
use spar_proxy::route::RequestHead;
use spar_proxy::Snapshot;
use spar_translate::type_url;
use spar_translate::{ProxyKind, ProxyNode};

use super::{chain_name, Args, Request};

/// Envoy's ext_authz HTTP filter (CUSTOM policies), which spar proxy does not run.
const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
const HCM: &str = "envoy.filters.network.http_connection_manager";
/// The shadow stat prefix of the RBAC filter that marks requests for ext_authz.
const CUSTOM_MARKER: &str = "istio_ext_authz_";
const CUSTOM_POLICY_PREFIX: &str = "istio-ext-authz-";
const SIDECAR_INBOUND: &str = "virtualInbound";

pub fn run(args: &Args, to: &str) -> anyhow::Result<ExitCode> {
    let req = Request::parse(args)?;
    let caller = Caller::parse(args)?;
    let (id, snapshot, custom) = load(args, to)?;
    let node = ProxyNode::parse_id(&id).with_context(|| format!("{id}: not a node id"))?;
    let (text, allowed) = explain_to(&snapshot, &node, &req, &caller, custom);
    print!("{text}");
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Who sends the request.
struct Caller {
    principal: Option<String>,
    ip: IpAddr,
    claims: Option<Map<String, Value>>,
}

impl Caller {
    fn parse(args: &Args) -> anyhow::Result<Caller> {
        let claims = match (&args.claims, &args.request_principal) {
            (Some(json), _) => {
                let v: Value = serde_json::from_str(json)
                    .with_context(|| format!("--claims {json:?}: not JSON"))?;
                let Value::Object(m) = v else {
                    bail!("--claims: give a JSON object, e.g. '{{\"iss\":\"https://issuer\",\"sub\":\"alice\"}}'");
                };
                Some(m)
            }
            (None, Some(rp)) => {
                let Some((iss, sub)) = rp
                    .rsplit_once('/')
                    .filter(|(i, s)| !i.is_empty() && !s.is_empty())
                else {
                    bail!("--request-principal {rp:?}: write it as <iss>/<sub>, e.g. https://issuer/alice");
                };
                let mut m = Map::new();
                m.insert("iss".into(), Value::String(iss.into()));
                m.insert("sub".into(), Value::String(sub.into()));
                Some(m)
            }
            (None, None) => None,
        };
        if let Some(p) = &args.source_principal {
            if !p.starts_with("spiffe://") {
                bail!("--source-principal {p:?}: give the certificate's SPIFFE URI, e.g. spiffe://cluster.local/ns/foo/sa/bar");
            }
        }
        Ok(Caller {
            principal: args.source_principal.clone(),
            ip: args.source_ip,
            claims,
        })
    }
}

/// The destination's resources as the proxy builds them (ext_authz filters left out, as
/// spar proxy refuses them), its node id, and whether any chain had ext_authz.
fn load(args: &Args, to: &str) -> anyhow::Result<(String, Snapshot, bool)> {
    match &args.config_dir {
        Some(dir) => {
            let mut x = super::translated(dir, to, &args.namespace)?;
            let mut custom = false;
            for l in &mut x.listeners {
                custom |= strip_ext_authz(l)?;
            }
            let s = Snapshot::from_xds(&x)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("{to}: its translated config"))?;
            Ok((to.to_string(), s, custom))
        }
        None => {
            let (id, mut sent) = super::sent_to(&args.cp, to)?;
            let mut custom = false;
            for (t, anys) in &mut sent {
                if *t != type_url::LISTENER {
                    continue;
                }
                for any in anys {
                    let mut l = PbListener::decode(any.value.as_slice())
                        .with_context(|| format!("{id}: a listener it was sent does not decode"))?;
                    if strip_ext_authz(&mut l)? {
                        custom = true;
                        any.value = l.encode_to_vec();
                    }
                }
            }
            let s = super::snapshot_of(&id, &sent)?;
            Ok((id, s, custom))
        }
    }
}

/// Removes ext_authz from every connection manager of `l`; true when there was one.
fn strip_ext_authz(l: &mut PbListener) -> anyhow::Result<bool> {
    let mut found = false;
    let chains = l
        .filter_chains
        .iter_mut()
        .chain(l.default_filter_chain.iter_mut());
    for f in chains.flat_map(|c| c.filters.iter_mut()) {
        found |= strip_from(f).with_context(|| format!("listener {}", l.name))?;
    }
    Ok(found)
}

fn strip_from(f: &mut Filter) -> anyhow::Result<bool> {
    if f.name != HCM {
        return Ok(false);
    }
    let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
        return Ok(false);
    };
    let mut hcm = HttpConnectionManager::decode(any.value.as_slice())
        .context("http_connection_manager does not decode")?;
    let before = hcm.http_filters.len();
    hcm.http_filters.retain(|h| h.name != EXT_AUTHZ);
    if hcm.http_filters.len() == before {
        return Ok(false);
    }
    any.value = hcm.encode_to_vec();
    Ok(true)
}

/// `ns[foo]-policy[bar]-rule[0]` → `foo/bar rule 0`; CUSTOM's marker names too.
pub(crate) fn istio_name(envoy: &str) -> String {
    let n = envoy.strip_prefix(CUSTOM_POLICY_PREFIX).unwrap_or(envoy);
    let parsed = (|| {
        let rest = n.strip_prefix("ns[")?;
        let (ns, rest) = rest.split_once("]-policy[")?;
        let (name, rest) = rest.rsplit_once("]-rule[")?;
        let rule = rest.strip_suffix(']')?;
        Some(format!("{ns}/{name} rule {rule}"))
    })();
    parsed.unwrap_or_else(|| envoy.to_string())
}

/// The filter's kind, as Istio calls it.
fn kind(f: &RbacFilter) -> &'static str {
    if f.rules.is_none() && f.shadow_stat_prefix == CUSTOM_MARKER {
        return "CUSTOM";
    }
    match f.rules.as_ref().or(f.shadow.as_ref()).map(|r| r.action) {
        Some(RbacAction::Allow) => "ALLOW",
        Some(RbacAction::Deny) => "DENY",
        Some(RbacAction::Log) | None => "AUDIT",
    }
}

/// The destination's chain for this request: (listener, chain, dst), or why there is none.
fn pick<'a>(
    s: &'a Snapshot,
    node: &ProxyNode,
    req: &Request,
    caller: &Caller,
) -> Result<(&'a Listener, &'a FilterChain, SocketAddr), String> {
    let ip: IpAddr = node
        .ip
        .parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let dst = SocketAddr::new(ip, req.port);
    let listener = match node.kind {
        ProxyKind::Sidecar => s
            .listeners
            .get(SIDECAR_INBOUND)
            .map(AsRef::as_ref)
            .ok_or_else(|| format!("the proxy has no {SIDECAR_INBOUND} listener"))?,
        ProxyKind::Router => s
            .listeners
            .values()
            .map(AsRef::as_ref)
            .find(|l| l.bind_to_port && l.address.port() == req.port)
            .ok_or_else(|| {
                let mut ports: Vec<u16> = s
                    .listeners
                    .values()
                    .filter(|l| l.bind_to_port)
                    .map(|l| l.address.port())
                    .collect();
                ports.sort_unstable();
                ports.dedup();
                format!(
                    "the gateway has no listener on port {} (it listens on {ports:?}); the connection is refused",
                    req.port
                )
            })?,
    };
    let mtls = caller.principal.is_some();
    let https = req.scheme == "https";
    let conn = ConnInfo {
        dst,
        src: SocketAddr::new(caller.ip, 0),
        sni: if node.kind == ProxyKind::Router && https {
            Some(req.host.clone())
        } else {
            None
        },
        transport: if mtls || https { "tls" } else { "raw_buffer" },
        alpn: if mtls && node.kind == ProxyKind::Sidecar {
            vec!["istio-peer-exchange".into(), "istio".into()]
        } else if https {
            vec!["h2".into(), "http/1.1".into()]
        } else {
            vec!["http/1.1".into()]
        },
    };
    let Some(fc) = chain::select(listener, &conn) else {
        let why = if node.kind == ProxyKind::Sidecar && !mtls {
            " (PeerAuthentication STRICT: only mTLS is accepted; give --source-principal)"
        } else {
            ""
        };
        return Err(format!(
            "no filter chain of {} accepts this connection{why}; the connection is closed",
            listener.name
        ));
    };
    Ok((listener, fc, dst))
}

/// The explanation, and whether the request is allowed.
fn explain_to(
    s: &Snapshot,
    node: &ProxyNode,
    req: &Request,
    caller: &Caller,
    custom: bool,
) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(out, "destination: {}", node.id);
    let (listener, fc, dst) = match pick(s, node, req, caller) {
        Ok(x) => x,
        Err(why) => {
            let _ = writeln!(out, "chain:       none: {why}");
            let _ = writeln!(out, "decision:    DENIED (connection closed)");
            return (out, false);
        }
    };
    let tls = fc.tls.is_some();
    let _ = writeln!(
        out,
        "chain:       {} {} ({})",
        listener.name,
        chain_name(fc),
        if tls { "TLS" } else { "plaintext" }
    );
    if node.kind == ProxyKind::Sidecar && fc.name == "InboundPassthroughFilterChain" {
        let mut ports: Vec<u16> = listener
            .chains
            .iter()
            .filter_map(|c| c.matcher.destination_port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let _ = writeln!(
            out,
            "note:        port {} is none of this workload's service ports ({ports:?}): the \
             connection passes through with no authorization. With --to, the URL's port is \
             the port the workload receives on (the Service's targetPort).",
            req.port
        );
    }
    let peer = match (&caller.principal, tls) {
        (Some(p), true) => Some(p.as_str()),
        (Some(_), false) => {
            let _ = writeln!(
                out,
                "note:        this chain does not terminate TLS (no mTLS here): the source \
                 principal is not seen, as for a plaintext caller"
            );
            None
        }
        (None, _) => None,
    };
    let _ = writeln!(
        out,
        "source:      {} ip {}",
        peer.map_or_else(
            || "plaintext (no peer identity),".to_string(),
            |p| format!("mTLS {p},")
        ),
        caller.ip
    );
    let sni = conn_sni(node, req);
    match &fc.filter {
        NetworkFilter::Tcp(_) => {
            let _ = writeln!(out, "request:     TCP connection to port {}", req.port);
            let input = RbacInput {
                head: None,
                dst,
                direct_remote: caller.ip,
                remote: caller.ip,
                peer_principal: peer,
                sni: &sni,
                jwt: None,
            };
            let allowed = filters(&mut out, &fc.rbac, &input, "DENIED (connection closed)");
            (out, allowed)
        }
        NetworkFilter::Http(hcm) => {
            let path = match spar_proxy::http::path::normalize(&req.path, &hcm.path) {
                spar_proxy::http::path::Normalized::Path(p) => p,
                spar_proxy::http::path::Normalized::Reject => {
                    let _ = writeln!(
                        out,
                        "decision:    DENIED (400: the path is rejected by path normalization)"
                    );
                    return (out, false);
                }
                spar_proxy::http::path::Normalized::Redirect(to) => {
                    let _ = writeln!(
                        out,
                        "decision:    redirected (307 to {to}) by path normalization"
                    );
                    return (out, true);
                }
            };
            let authority = req.authority();
            let _ = writeln!(out, "request:     {} {}{}", req.method, authority, path);
            if custom {
                let _ = writeln!(
                    out,
                    "note:        this proxy was sent an ext_authz filter (CUSTOM); spar proxy does \
                     not run it, and this explanation leaves it out"
                );
            }
            // The token, as jwt_authn would leave it for RBAC.
            let metadata = match token(&mut out, hcm.jwt.as_deref(), caller.claims.as_ref()) {
                Ok(m) => m,
                Err(status) => {
                    let _ = writeln!(out, "decision:    DENIED ({status}, by RequestAuthentication before any AuthorizationPolicy)");
                    return (out, false);
                }
            };
            let head = RequestHead {
                method: &req.method,
                scheme: &req.scheme,
                authority: &authority,
                path: &path,
                headers: &req.headers,
                random: 0,
            };
            let input = RbacInput {
                head: Some(&head),
                dst,
                direct_remote: caller.ip,
                remote: remote_address(
                    caller.ip,
                    &req.headers,
                    hcm.use_remote_address,
                    hcm.xff_num_trusted_hops,
                ),
                peer_principal: peer,
                sni: &sni,
                jwt: metadata.as_ref(),
            };
            let allowed = filters(
                &mut out,
                &hcm.rbac,
                &input,
                "DENIED (403 RBAC: access denied)",
            );
            (out, allowed)
        }
    }
}

fn conn_sni(node: &ProxyNode, req: &Request) -> String {
    if node.kind == ProxyKind::Router && req.scheme == "https" {
        req.host.clone()
    } else {
        String::new()
    }
}

/// jwt_authn on the claims given: the metadata RBAC sees, or the status it refuses with.
fn token(
    out: &mut String,
    jwt: Option<&spar_proxy::config::jwt::JwtAuthn>,
    claims: Option<&Map<String, Value>>,
) -> Result<Option<Map<String, Value>>, &'static str> {
    let Some(claims) = claims else {
        let _ = writeln!(
            out,
            "token:       none (RequestAuthentication lets a request without a token through; \
             only an AuthorizationPolicy can deny it)"
        );
        return Ok(None);
    };
    let Some(jwt) = jwt else {
        let _ = writeln!(
            out,
            "token:       not read: no RequestAuthentication applies here, so its claims are \
             not seen by authorization (requestPrincipals and request.auth.* never match)"
        );
        return Ok(None);
    };
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let Some(provider) = jwt.providers.iter().find(|p| p.issuer == iss) else {
        let known: Vec<&str> = jwt.providers.iter().map(|p| p.issuer.as_str()).collect();
        let _ = writeln!(
            out,
            "token:       issuer {iss:?} is not one the RequestAuthentication here trusts ({known:?})"
        );
        return Err("401 Jwt issuer is not configured");
    };
    if !provider.audiences.is_empty() {
        let aud: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(xs)) => xs.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !aud
            .iter()
            .any(|a| provider.audiences.iter().any(|p| p == a))
        {
            let _ = writeln!(
                out,
                "token:       audiences {aud:?}, the RequestAuthentication wants one of {:?}",
                provider.audiences
            );
            return Err("403 Audiences in Jwt are not allowed");
        }
    }
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let _ = writeln!(
        out,
        "token:       assumed valid (signature and expiry not checked); request principal {iss}/{sub}"
    );
    Ok(provider.payload_in_metadata.as_ref().map(|key| {
        let mut m = Map::new();
        m.insert(key.clone(), Value::Object(claims.clone()));
        m
    }))
}

/// Every RBAC filter in order, until one denies; true when all allow.
fn filters(
    out: &mut String,
    fs: &[std::sync::Arc<RbacFilter>],
    input: &RbacInput<'_>,
    denied: &str,
) -> bool {
    if fs.is_empty() {
        let _ = writeln!(out, "policies:    none apply to this workload and port");
        let _ = writeln!(out, "decision:    ALLOWED (no AuthorizationPolicy applies)");
        return true;
    }
    let _ = writeln!(out, "RBAC filters, in the order the proxy runs them:");
    let mut needs_token = false;
    let mut allowed_by = None;
    for f in fs {
        let m = explain(f, input);
        let k = kind(f);
        let _ = writeln!(out, "{k}");
        if let Some(r) = &m.enforced {
            rules(out, r, None);
            // Only the token stands between the request and the rule.
            needs_token |= r
                .policies
                .iter()
                .any(|p| p.needs_token && p.permission && !p.principal);
        }
        if let Some(r) = &m.shadow {
            if k == "CUSTOM" {
                rules(
                    out,
                    r,
                    Some("sent to the external authorizer (not run here)"),
                );
            } else {
                rules(out, r, Some("dry-run"));
                let verdict = if r.allowed() { "ALLOW" } else { "DENY" };
                let by = r
                    .first_match()
                    .map_or(String::new(), |p| format!(" ({})", istio_name(p)));
                let _ = writeln!(out, "  dry-run: would {verdict}{by}, not enforced");
            }
        }
        if k == "ALLOW" {
            if let Some(p) = m.enforced.as_ref().and_then(RulesMatch::first_match) {
                allowed_by = Some(istio_name(p));
            }
        }
        if let Decision::Deny(policy) = &m.decision {
            let why = match policy {
                Some(p) => format!("{k} {}", istio_name(p)),
                None => "no ALLOW rule matches; once an ALLOW policy applies to a workload, \
                         what no ALLOW rule matches is denied"
                    .to_string(),
            };
            let _ = writeln!(out, "decision:    {denied}: {why}");
            if needs_token && input.jwt.is_none() {
                token_note(out);
            }
            return false;
        }
    }
    let why = match allowed_by {
        Some(p) => format!("ALLOW {p}"),
        None => "no DENY rule matches and no ALLOW policy applies".to_string(),
    };
    let _ = writeln!(out, "decision:    ALLOWED: {why}");
    true
}

fn token_note(out: &mut String) {
    let _ = writeln!(
        out,
        "note:        the request has no (verified) token, and a rule needs one \
         (requestPrincipals / request.auth.*). RequestAuthentication allows a request \
         without a token; it is the AuthorizationPolicy that denies it. Send a valid token \
         (here: --claims or --request-principal)."
    );
}

/// One rule set's policies, one line each.
fn rules(out: &mut String, r: &RulesMatch<'_>, label: Option<&str>) {
    if r.policies.is_empty() {
        let _ = writeln!(
            out,
            "  (no rules: {})",
            match (label, r.action) {
                (None, RbacAction::Allow) => "allows nothing",
                _ => "matches nothing",
            }
        );
    }
    for p in &r.policies {
        let name = istio_name(p.name);
        let tag = label.map_or(String::new(), |l| format!("[{l}] "));
        let name = format!("{name} {tag}");
        let verdict = if p.matches() {
            match (label, r.action) {
                (Some(_), _) => "matches".to_string(),
                (None, RbacAction::Allow) => "MATCHES: allows".to_string(),
                (None, RbacAction::Deny) => "MATCHES: denies".to_string(),
                (None, RbacAction::Log) => "matches: logged (AUDIT never denies)".to_string(),
            }
        } else {
            format!("no match: {}", p.why_not.as_deref().unwrap_or("-"))
        };
        let _ = writeln!(out, "  {name:<30} {verdict}");
    }
}
