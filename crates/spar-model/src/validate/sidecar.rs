//! Webhook rules for `Sidecar`: ingress and egress listeners (ports, binds, unix
//! sockets, default endpoints, TLS), egress hosts, and the outbound traffic policy.

use std::collections::{BTreeMap, BTreeSet};

use super::common::{
    check_connection_pool, check_destination, check_port, check_port_name, check_protocol,
    check_selector, error, fqdn, ip_address, namespaced_host, unix_path, warn, Diags, Protocol,
    UNIX_PREFIX,
};
use super::gateway::check_server_tls;
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{
    CaptureMode, Destination, IstioEgressListener, IstioIngressListener, OutboundTrafficPolicy,
    OutboundTrafficPolicyMode, ServerTLSMode, Sidecar, SidecarPort,
};
use crate::FieldPath;

pub fn check(spec: &Sidecar, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    if let Some(sel) = &spec.workload_selector {
        check_selector(
            &mut out,
            &root.field("workloadSelector").field("labels"),
            &sel.labels,
            "Sidecar",
        );
    }
    if spec.egress.is_empty()
        && spec.ingress.is_empty()
        && spec.outbound_traffic_policy.is_none()
        && spec.inbound_connection_pool.is_none()
    {
        error(&mut out, root.clone(), "a Sidecar must configure at least one of egress, ingress, outboundTrafficPolicy or inboundConnectionPool");
        return out;
    }
    let mut ports = BTreeSet::new();
    for (i, listener) in spec.ingress.iter().enumerate() {
        check_ingress(
            &mut out,
            &root.field("ingress").index(i),
            listener,
            &mut ports,
        );
    }
    if let Some(pool) = &spec.inbound_connection_pool {
        check_connection_pool(&mut out, &root.field("inboundConnectionPool"), pool);
    }
    check_egress(&mut out, &root.field("egress"), &spec.egress, ctx.namespace);
    if let Some(tp) = &spec.outbound_traffic_policy {
        check_outbound_policy(&mut out, &root.field("outboundTrafficPolicy"), tp);
    }
    out
}

/// Name, protocol and target port of a listener port; number and bind are per kind.
fn check_port_basics(out: &mut Diags, path: &FieldPath, port: &SidecarPort) {
    if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
        check_port_name(out, path.field("name"), name);
    }
    check_protocol(out, path.field("protocol"), port.protocol.as_deref());
    if port.target_port.is_some_and(|t| t > 0) {
        error(
            out,
            path.field("targetPort"),
            "targetPort has no effect on Sidecars: remove it",
        );
    }
}

fn check_bind_ip(out: &mut Diags, path: FieldPath, bind: Option<&str>) {
    if let Some(bind) = bind.filter(|b| !b.is_empty()) {
        if let Err(e) = ip_address(bind) {
            error(out, path, format!("bind {e}"));
        }
    }
}

fn check_ingress(
    out: &mut Diags,
    path: &FieldPath,
    l: &IstioIngressListener,
    ports: &mut BTreeSet<u32>,
) {
    let Some(port) = &l.port else { return }; // required by the schema
    let pp = path.field("port");
    check_port_basics(out, &pp, port);
    let number = port.number.unwrap_or(0);
    check_port(out, pp.field("number"), number);
    check_bind_ip(out, path.field("bind"), l.bind.as_deref());
    if !ports.insert(number) {
        error(
            out,
            pp.field("number"),
            format!("port {number} is already used by another ingress listener"),
        );
    }
    if let Some(ep) = l.default_endpoint.as_deref().filter(|e| !e.is_empty()) {
        if let Err(e) = check_default_endpoint(ep) {
            error(out, path.field("defaultEndpoint"), e);
        }
    }
    let protocol = port.protocol.as_deref().and_then(Protocol::parse);
    if let Some(tls) = &l.tls {
        let tp = path.field("tls");
        let unsupported = [
            ("subjectAltNames", !tls.subject_alt_names.is_empty()),
            ("httpsRedirect", tls.https_redirect == Some(true)),
            (
                "credentialName",
                tls.credential_name
                    .as_deref()
                    .is_some_and(|c| !c.is_empty()),
            ),
            ("credentialNames", !tls.credential_names.is_empty()),
            ("tlsCertificates", !tls.tls_certificates.is_empty()),
        ];
        for (field, set) in unsupported {
            if set {
                error(out, tp.field(field), format!("{field} is not supported in Sidecar ingress tls: use serverCertificate, privateKey and caCertificates"));
            }
        }
        if let Some(mode @ (ServerTLSMode::IstioMutual | ServerTLSMode::AutoPassthrough)) = tls.mode
        {
            error(
                out,
                tp.field("mode"),
                format!(
                    "mode {} cannot be used in Sidecar ingress tls",
                    mode.as_str()
                ),
            );
        }
        if !protocol.is_some_and(Protocol::is_tls) {
            error(
                out,
                tp,
                "only HTTPS or TLS ingress ports can have tls settings",
            );
        }
        check_server_tls(out, &path.field("tls"), tls);
    }
    if let Some(pool) = &l.connection_pool {
        check_connection_pool(out, &path.field("connectionPool"), pool);
        if pool.http.is_some() && !protocol.is_some_and(Protocol::is_http) {
            warn(
                out,
                path.field("connectionPool").field("http"),
                format!("HTTP connection pool settings on port {number}, whose protocol is not HTTP: only the tcp settings apply"),
            );
        }
    }
}

/// Where an ingress listener forwards: the loopback or any-address with a port, or a
/// unix socket.
fn check_default_endpoint(ep: &str) -> Result<(), String> {
    const FORM: &str = "defaultEndpoint must be 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix:///path";
    if let Some(sock) = ep.strip_prefix(UNIX_PREFIX) {
        return unix_path(sock);
    }
    let (host, port) = if let Some(rest) = ep.strip_prefix('[') {
        rest.split_once("]:").ok_or_else(|| FORM.to_string())?
    } else {
        match ep.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p),
            _ => return Err(FORM.into()),
        }
    };
    if !matches!(host, "" | "127.0.0.1" | "0.0.0.0" | "::1" | "::") {
        return Err(format!("{FORM} (got host {host:?})"));
    }
    match port.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(()),
        Ok(n) => Err(format!(
            "defaultEndpoint port {n} must be in the range 1..65535"
        )),
        Err(_) => Err(format!("defaultEndpoint port {port:?} is not a number")),
    }
}

fn check_egress(
    out: &mut Diags,
    path: &FieldPath,
    listeners: &[IstioEgressListener],
    namespace: &str,
) {
    let mut catch_all = false;
    let mut ports = BTreeSet::new();
    let mut sockets = BTreeSet::new();
    for (i, l) in listeners.iter().enumerate() {
        let p = path.index(i);
        match &l.port {
            None if catch_all => {
                error(
                    out,
                    p.field("port"),
                    "only one egress listener may omit the port",
                );
                continue;
            }
            None if i + 1 == listeners.len() => catch_all = true,
            None => {
                catch_all = true;
                error(out, p.field("port"), "the egress listener without a port catches everything else, so it must be the last one");
            }
            Some(port) => check_egress_port(out, &p, l, port, &mut ports, &mut sockets),
        }
        check_egress_hosts(out, &p.field("hosts"), &l.hosts, namespace);
    }
}

fn check_egress_port(
    out: &mut Diags,
    path: &FieldPath,
    l: &IstioEgressListener,
    port: &SidecarPort,
    ports: &mut BTreeSet<u32>,
    sockets: &mut BTreeSet<String>,
) {
    let pp = path.field("port");
    check_port_basics(out, &pp, port);
    let bind = l.bind.as_deref().unwrap_or("");
    let number = port.number.unwrap_or(0);
    if number == 0 {
        // Port 0 means a unix domain socket listener.
        match bind.strip_prefix(UNIX_PREFIX) {
            Some(sock) => {
                if let Err(e) = unix_path(sock) {
                    error(out, path.field("bind"), e);
                }
            }
            None => error(out, path.field("bind"), "an egress listener with port 0 needs a unix domain socket bind, e.g. unix:///var/run/app.sock"),
        }
        if !matches!(
            l.capture_mode,
            None | Some(CaptureMode::Default | CaptureMode::None)
        ) {
            error(
                out,
                path.field("captureMode"),
                "captureMode must be DEFAULT or NONE for unix domain socket listeners",
            );
        }
        if !sockets.insert(bind.to_string()) {
            error(
                out,
                path.field("bind"),
                format!("unix socket {bind:?} is already used by another egress listener"),
            );
        }
    } else {
        check_port(out, pp.field("number"), number);
        check_bind_ip(out, path.field("bind"), Some(bind));
        if !ports.insert(number) {
            error(
                out,
                pp.field("number"),
                format!("port {number} is already used by another egress listener"),
            );
        }
    }
}

fn check_egress_hosts(out: &mut Diags, path: &FieldPath, hosts: &[String], namespace: &str) {
    if hosts.is_empty() {
        error(
            out,
            path.clone(),
            "an egress listener needs at least one host, e.g. \"./*\" or \"istio-system/*\"",
        );
    }
    // Hosts already imported, per namespace, to spot entries that add nothing.
    let mut imported: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (i, host) in hosts.iter().enumerate() {
        let p = path.index(i);
        for problem in namespaced_host(host, false) {
            error(out, p.clone(), problem);
        }
        let Some((ns, name)) = host.split_once('/') else {
            continue;
        };
        if ns.starts_with('~') {
            continue;
        }
        let ns = if ns == "." { namespace } else { ns };
        let known = imported.entry(ns.to_string()).or_default();
        let redundant = if name == "*" {
            !known.is_empty()
        } else {
            known.contains(name) || known.contains("*")
        };
        if redundant {
            warn(
                out,
                p,
                format!("egress host {host:?} is already covered by an earlier host"),
            );
        }
        known.insert(name);
    }
    if imported.get("*").is_some_and(|s| s.contains("*")) && imported.len() > 1 {
        warn(
            out,
            path.clone(),
            "*/* already imports every host: the other hosts add nothing",
        );
    }
}

fn check_outbound_policy(out: &mut Diags, path: &FieldPath, tp: &OutboundTrafficPolicy) {
    let Some(proxy) = &tp.egress_proxy else {
        return;
    };
    let p = path.field("egressProxy");
    if tp.mode != Some(OutboundTrafficPolicyMode::AllowAny) {
        error(out, p, "egressProxy can only be set with mode ALLOW_ANY");
        return;
    }
    if let Err(e) = fqdn(proxy.host.as_deref().unwrap_or("")) {
        error(out, p.field("host"), format!("egressProxy host: {e}"));
    }
    if proxy.port.is_none() {
        error(
            out,
            p.field("port"),
            "egressProxy needs a port, e.g. port: {number: 3128}",
        );
        return;
    }
    // The host was held to the stricter FQDN rule above.
    let rest = Destination {
        host: None,
        ..proxy.clone()
    };
    check_destination(out, &p, &rest);
}

#[cfg(test)]
#[path = "sidecar_tests.rs"]
mod tests;
