//! `spar ctl explain`: what a proxy does with one request, computed by `spar proxy`'s own
//! code on the resources that proxy was sent.
//!
//! `--from <proxy> <url>`: the path the request takes out of a proxy — listener, filter
//! chain, route configuration, virtual host, route (and the VirtualService it came from),
//! action, clusters and endpoints (`spar_proxy::listener::chain::select`,
//! `spar_proxy::route::select`).
//!
//! `--to <proxy> <url>`: how the destination proxy authorizes it — its inbound chain (or
//! gateway listener), every RBAC filter with each AuthorizationPolicy rule and whether it
//! matches, dry-run rules, and the decision (`spar_proxy::http::rbac`); see [`policy`].
//!
//! Online (the default) it reads the resources from the control plane's
//! `/debug/config_dump`; with `--config-dir` it translates the directory for the given node
//! id instead, with no control plane.

mod policy;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use envoy_types::pb::google::protobuf::Any;
use spar_proxy::config::listener::{FilterChain, Listener, NetworkFilter, Routes};
use spar_proxy::config::route::{Action, RouteConfig, Target};
use spar_proxy::listener::chain::{self, ConnInfo};
use spar_proxy::route::{self as routing, RequestHead};
use spar_proxy::Snapshot;
use spar_translate::type_url;

use super::ctl::http_get;

/// Where a request goes from a proxy (`--from`), or whether the proxy it goes to lets it
/// in (`--to`).
///
/// `--from <proxy> <url>` explains routing: the listener, filter chain, route, the
/// VirtualService it came from, clusters and endpoints. Exit code 1 when no listener or
/// route matches (a 404 `NR`).
///
/// `--to <proxy> <url>` explains authorization at the destination (a sidecar's inbound
/// chain for the URL's port, which is the workload's port, i.e. the Service's targetPort;
/// or a gateway's listener on that port): each RBAC filter in Envoy's order (CUSTOM, DENY,
/// ALLOW; AUDIT only logs), every AuthorizationPolicy rule as `<namespace>/<name> rule <i>`
/// with whether it matches this request and, if not, why not; dry-run
/// (`istio.io/dry-run`) rules as what they would do, not enforced; and the decision.
/// Describe the caller with `--source-principal` (mTLS) or `--plaintext` (the default),
/// `--source-ip`, `-X`, `-H`, and its JWT with `--claims` or `--request-principal` (the
/// token is assumed valid: signature and expiry are not checked). Exit code 0 when the
/// request is allowed, 1 when it is denied (403, 401, or the connection closed).
///
/// Errors (bad arguments, an unknown proxy, an unreachable control plane) exit with 2.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("proxy").required(true).args(["from", "to"])))]
pub struct Args {
    /// Explain routing from this proxy: its node id, or `<pod>.<namespace>` when connected.
    #[arg(long)]
    pub from: Option<String>,

    /// Explain authorization at this destination proxy (sidecar or gateway): its node id,
    /// or `<pod>.<namespace>` when connected.
    #[arg(long)]
    pub to: Option<String>,

    /// The request URL, as the application would call it (`http://reviews:9080/reviews/1`).
    /// With `--to` its port is the port the destination receives on.
    pub url: String,

    /// A request header (`name:value`); repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,

    /// The request method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,

    /// With `--to`: the caller's mTLS identity, the SPIFFE URI of its certificate
    /// (`spiffe://cluster.local/ns/foo/sa/bar`).
    #[arg(long, requires = "to", value_name = "SPIFFE_URI")]
    pub source_principal: Option<String>,

    /// With `--to`: the caller connects without mTLS (the default without
    /// `--source-principal`).
    #[arg(long, requires = "to", conflicts_with = "source_principal")]
    pub plaintext: bool,

    /// With `--to`: the caller's address (ipBlocks; remoteIpBlocks also read
    /// x-forwarded-for as the proxy does).
    #[arg(long, requires = "to", value_name = "IP", default_value = "10.255.0.1")]
    pub source_ip: IpAddr,

    /// With `--to`: the claims of the request's JWT, as a JSON object
    /// (`{"iss":"https://issuer","sub":"alice","groups":["admin"]}`). The token is assumed
    /// valid (signature, expiry not checked); its issuer and audiences are checked against
    /// the RequestAuthentication the destination has.
    #[arg(
        long,
        requires = "to",
        value_name = "JSON",
        conflicts_with = "request_principal"
    )]
    pub claims: Option<String>,

    /// With `--to`: shorthand for `--claims` with only `iss` and `sub`, given as Istio's
    /// request principal `<iss>/<sub>`.
    #[arg(long, requires = "to", value_name = "ISS/SUB")]
    pub request_principal: Option<String>,

    /// The control plane's monitoring address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub cp: String,

    /// Translate this directory for the proxy (then a full node id,
    /// `sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`) instead of asking a
    /// running control plane.
    #[arg(long)]
    pub config_dir: Option<PathBuf>,

    /// Namespace for resources that do not set `metadata.namespace` (with `--config-dir`).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let from = match (&args.from, &args.to) {
        (Some(from), _) => from,
        (None, Some(to)) => return policy::run(args, to),
        (None, None) => bail!("give --from <proxy> (routing) or --to <proxy> (authorization)"),
    };
    let snapshot = match &args.config_dir {
        Some(dir) => offline(dir, from, &args.namespace)?,
        None => online(&args.cp, from)?,
    };
    let req = Request::parse(args)?;
    let (text, found) = explain(&snapshot, &req);
    print!("{text}");
    Ok(if found {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The request as route matching sees it.
pub(crate) struct Request {
    scheme: String,
    host: String,
    port: u16,
    path: String,
    method: String,
    headers: http::HeaderMap,
}

impl Request {
    pub(crate) fn parse(args: &Args) -> anyhow::Result<Request> {
        let uri: http::Uri = args
            .url
            .parse()
            .with_context(|| format!("{:?} is not a URL", args.url))?;
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let Some(host) = uri.host() else {
            bail!("{:?}: give a host, e.g. http://reviews:9080/", args.url);
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let mut headers = http::HeaderMap::new();
        for h in &args.headers {
            let Some((name, value)) = h.split_once(':') else {
                bail!("-H {h:?}: write it as name:value");
            };
            headers.append(
                http::HeaderName::from_bytes(name.trim().as_bytes())
                    .with_context(|| format!("-H {h:?}: bad header name"))?,
                http::HeaderValue::from_str(value.trim())
                    .with_context(|| format!("-H {h:?}: bad header value"))?,
            );
        }
        Ok(Request {
            scheme,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            method: args.method.to_ascii_uppercase(),
            headers,
        })
    }

    pub(crate) fn authority(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The explanation, and whether the request reaches a route.
fn explain(s: &Snapshot, req: &Request) -> (String, bool) {
    let mut out = String::new();
    let Some((listener, dst)) = pick_listener(s, req) else {
        let _ = writeln!(
            out,
            "listener:  none on port {} (the proxy passes such traffic through or drops it per outboundTrafficPolicy)",
            req.port
        );
        return (out, false);
    };
    let _ = writeln!(out, "listener:  {} ({})", listener.name, listener.address);
    let conn = ConnInfo {
        dst,
        src: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        sni: (req.scheme == "https").then(|| req.host.clone()),
        transport: if req.scheme == "https" {
            "tls"
        } else {
            "raw_buffer"
        },
        alpn: if req.scheme == "https" {
            vec!["h2".to_string(), "http/1.1".to_string()]
        } else {
            vec!["http/1.1".to_string()]
        },
    };
    let Some(fc) = chain::select(listener, &conn) else {
        let _ = writeln!(out, "chain:     none matches (the connection is closed)");
        return (out, false);
    };
    let _ = writeln!(out, "chain:     {}", chain_name(fc));
    match &fc.filter {
        NetworkFilter::Tcp(t) => {
            let _ = writeln!(out, "tcp proxy: {}", t.stat_prefix);
            for (c, w) in &t.clusters {
                cluster(&mut out, s, c, Some(*w));
            }
            (out, true)
        }
        NetworkFilter::Http(hcm) => {
            let rc = match &hcm.routes {
                Routes::Inline(rc) => Some(rc.clone()),
                Routes::Rds(name) => s.routes.get(name).cloned(),
            };
            let Some(rc) = rc else {
                let _ = writeln!(
                    out,
                    "routes:    not received (RDS {:?})",
                    rds_name(&hcm.routes)
                );
                return (out, false);
            };
            http_route(&mut out, s, &rc, req)
        }
    }
}

fn rds_name(r: &Routes) -> &str {
    match r {
        Routes::Rds(n) => n,
        Routes::Inline(rc) => &rc.name,
    }
}

fn chain_name(fc: &FilterChain) -> &str {
    if fc.name.is_empty() {
        "(unnamed)"
    } else {
        &fc.name
    }
}

fn http_route(out: &mut String, s: &Snapshot, rc: &RouteConfig, req: &Request) -> (String, bool) {
    let _ = writeln!(out, "routes:    {}", rc.name);
    let authority = req.authority();
    let head = RequestHead {
        method: &req.method,
        scheme: &req.scheme,
        authority: &authority,
        path: &req.path,
        headers: &req.headers,
        // Explain the deterministic outcome: runtime fractions below 100% count as missed
        // only when they are 0.
        random: 0,
    };
    let Some(vh) = routing::virtual_host(rc, &authority) else {
        let _ = writeln!(out, "vhost:     none for {authority:?} → 404 (NR)");
        return (std::mem::take(out), false);
    };
    let _ = writeln!(out, "vhost:     {}", vh.name);
    let Some(sel) = routing::select(rc, &head) else {
        let _ = writeln!(
            out,
            "route:     none matches {} {} → 404 (NR)",
            req.method, req.path
        );
        return (std::mem::take(out), false);
    };
    let name = if sel.route_name().is_empty() {
        String::new()
    } else {
        format!(" {:?}", sel.route_name())
    };
    let _ = writeln!(out, "route:     #{}{name}", sel.index);
    if let Some(src) = &sel.route.istio_config {
        let _ = writeln!(out, "source:    {}", source_name(src));
    }
    match &sel.route.action {
        Action::Direct { status, .. } => {
            let _ = writeln!(out, "action:    direct response {status}");
        }
        Action::Redirect(r) => {
            let _ = writeln!(out, "action:    redirect {r:?}");
        }
        Action::Forward(f) => {
            if let Some(t) = f.timeout {
                let _ = writeln!(out, "timeout:   {t:?}");
            }
            if let Some(r) = &f.retry {
                let _ = writeln!(out, "retries:   {} on {}", r.num_retries, retry_on(&r.on));
            }
            if let Some(p) = &f.prefix_rewrite {
                let _ = writeln!(out, "rewrite:   prefix → {p}");
            }
            if let Some(h) = &f.host_rewrite {
                let _ = writeln!(out, "rewrite:   authority → {h}");
            }
            match &f.target {
                Target::Cluster(c) => cluster(out, s, c, None),
                Target::Weighted(ws) => {
                    for w in ws {
                        cluster(out, s, &w.cluster, Some(w.weight));
                    }
                }
                Target::Header(h) => {
                    let named = req.headers.get(h).and_then(|v| v.to_str().ok());
                    match named {
                        Some(c) => cluster(out, s, c, None),
                        None => {
                            let _ = writeln!(out, "cluster:   from header {h}, absent → 503");
                        }
                    }
                }
            }
            for m in &f.mirrors {
                let _ = writeln!(out, "mirror:    {}", m.cluster);
            }
        }
    }
    (std::mem::take(out), true)
}

/// Envoy's `retry_on` spelling of the conditions that are on.
fn retry_on(on: &spar_proxy::config::route::RetryOn) -> String {
    let flags = [
        (on.five_xx, "5xx"),
        (on.gateway_error, "gateway-error"),
        (on.connect_failure, "connect-failure"),
        (on.reset, "reset"),
        (on.refused_stream, "refused-stream"),
        (on.retriable_status_codes, "retriable-status-codes"),
        (on.retriable_4xx, "retriable-4xx"),
    ];
    let mut names: Vec<String> = flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| (*n).to_string())
        .collect();
    names.extend(on.grpc.iter().map(|c| format!("grpc-status {c}")));
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(",")
    }
}

/// `/apis/networking.istio.io/v1alpha3/namespaces/default/virtual-service/reviews` →
/// `VirtualService default/reviews`.
fn source_name(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [.., "namespaces", ns, "virtual-service", name] => format!("VirtualService {ns}/{name}"),
        _ => path.to_string(),
    }
}

fn cluster(out: &mut String, s: &Snapshot, name: &str, weight: Option<u32>) {
    let w = weight.map_or(String::new(), |w| format!("  weight {w}"));
    let Some(c) = s.clusters.get(name) else {
        let _ = writeln!(out, "cluster:   {name}{w}  (not received: 503 NC)");
        return;
    };
    let _ = writeln!(out, "cluster:   {name}{w}  ({:?}, {:?})", c.discovery, c.lb);
    let key = if c.eds_service_name.is_empty() {
        name
    } else {
        &c.eds_service_name
    };
    let localities = s
        .assignments
        .get(key)
        .map(|a| a.as_slice().to_vec())
        .or_else(|| c.inline_hosts.clone())
        .unwrap_or_default();
    let hosts: Vec<String> = localities
        .iter()
        .flat_map(|l| {
            l.hosts.iter().map(move |h| {
                let loc = if l.name.trim_matches('/').is_empty() {
                    String::new()
                } else {
                    format!(" {}", l.name)
                };
                format!("{} (p{}{loc})", h.key(), l.priority)
            })
        })
        .collect();
    if hosts.is_empty() {
        let _ = writeln!(out, "endpoints: none (503 UH)");
    } else {
        let _ = writeln!(out, "endpoints: {}", hosts.join(", "));
    }
}

/// The listener a request to `req` lands on: a gateway's bound listener on that port, else
/// (sidecars) the outbound listener for that port — on the host's address when it is an IP,
/// else the wildcard one — reached through the original-destination listener.
fn pick_listener<'a>(s: &'a Snapshot, req: &Request) -> Option<(&'a Listener, SocketAddr)> {
    let on_port = |l: &&Listener| l.address.port() == req.port;
    let bound = s
        .listeners
        .values()
        .map(AsRef::as_ref)
        .find(|l| on_port(l) && l.bind_to_port);
    if let Some(l) = bound {
        return Some((l, l.address));
    }
    let ip: Option<IpAddr> = req.host.parse().ok();
    let by_ip = ip.and_then(|ip| {
        s.listeners
            .values()
            .map(AsRef::as_ref)
            .find(|l| on_port(l) && l.address.ip() == ip)
    });
    let l = by_ip.or_else(|| {
        s.listeners
            .values()
            .map(AsRef::as_ref)
            .find(|l| on_port(l) && l.address.ip().is_unspecified())
    })?;
    let dst = SocketAddr::new(ip.unwrap_or(l.address.ip()), req.port);
    Some((l, dst))
}

pub(crate) fn online(cp: &str, proxy: &str) -> anyhow::Result<Snapshot> {
    let (id, sent) = sent_to(cp, proxy)?;
    snapshot_of(&id, &sent)
}

/// The resources a connected proxy was sent, per type (clusters, endpoints, listeners,
/// routes), and its full node id.
pub(crate) type Sent = Vec<(&'static str, Vec<Any>)>;

pub(crate) fn sent_to(cp: &str, proxy: &str) -> anyhow::Result<(String, Sent)> {
    let id = super::proxy_config::resolve(cp, proxy)?;
    let path = format!(
        "/debug/config_dump?proxyID={}",
        super::proxy_config::percent_encode(&id)
    );
    let dump: serde_json::Value = serde_json::from_str(&http_get(cp, &path)?)
        .context("reading /debug/config_dump (is --cp a Spar control plane?)")?;
    // A proxy that reconnected may briefly have two connections; the newest is what it runs.
    let conn = dump["connections"]
        .as_array()
        .and_then(|cs| cs.iter().max_by_key(|c| c["connection"].as_u64()))
        .with_context(|| format!("{id}: no connection"))?;
    let mut sent = Vec::new();
    for t in [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ] {
        let short = spar_xds::resources::short_name(t);
        let mut anys = Vec::new();
        for r in conn["resources"][short].as_array().into_iter().flatten() {
            let bytes = r["base64"]
                .as_str()
                .and_then(spar_xds::dump::base64_decode)
                .with_context(|| format!("{short} {}: unreadable bytes", r["name"]))?;
            anys.push(Any {
                type_url: t.to_string(),
                value: bytes,
            });
        }
        sent.push((t, anys));
    }
    Ok((id, sent))
}

/// What the proxy builds from `sent`.
pub(crate) fn snapshot_of(id: &str, sent: &Sent) -> anyhow::Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    for (t, anys) in sent {
        let short = spar_xds::resources::short_name(t);
        snapshot = snapshot
            .apply(t, anys, &[], true)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{id}: the {short} it was sent"))?;
    }
    Ok(snapshot)
}

fn offline(dir: &PathBuf, node_id: &str, namespace: &str) -> anyhow::Result<Snapshot> {
    let x = translated(dir, node_id, namespace)?;
    Snapshot::from_xds(&x)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{node_id}: its translated config"))
}

/// What the control plane would send `node_id` for the config in `dir`.
pub(crate) fn translated(
    dir: &PathBuf,
    node_id: &str,
    namespace: &str,
) -> anyhow::Result<spar_translate::XdsResources> {
    let side = super::diff::load(dir, namespace)?;
    let node = super::diff::given_proxy(node_id, &[&side])?;
    Ok(spar_translate::translate(
        &side.config,
        &side.registry,
        &node,
    ))
}
