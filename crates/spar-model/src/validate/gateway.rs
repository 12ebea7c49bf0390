//! Webhook rules for `Gateway`: servers, their hosts, ports, bind addresses and TLS.
//! The server TLS rules are shared with Sidecar ingress listeners.

use std::collections::BTreeSet;

use super::common::{
    check_labels, check_port, error, ip_address, namespaced_host, unix_path, warn, Diags, Protocol,
    PROTOCOL_NAMES, UNIX_PREFIX,
};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{Gateway, Server, ServerTLSMode, ServerTLSSettings, TLSProtocol};
use crate::names;
use crate::FieldPath;

/// Cipher suites BoringSSL (and so Envoy) knows; others are dropped by istiod.
const CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

pub fn check(spec: &Gateway, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    // Istio names generated resources after the Gateway, so its name is a DNS label.
    if !ctx.name.is_empty() && !names::is_dns1123_label(ctx.name) {
        error(
            &mut out,
            FieldPath::root().field("metadata").field("name"),
            format!(
                "invalid gateway name {:?}: use a DNS label (letters, digits and '-', no dots)",
                ctx.name
            ),
        );
    }
    check_labels(&mut out, &root.field("selector"), &spec.selector);
    if spec.servers.is_empty() {
        error(
            &mut out,
            root.field("servers"),
            "a Gateway needs at least one server",
        );
    }
    let mut port_names = BTreeSet::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let p = root.field("servers").index(i);
        check_server(&mut out, &p, server);
        let Some(port) = &server.port else { continue };
        let name = port.name.as_deref().unwrap_or("");
        if !port_names.insert(name) {
            error(
                &mut out,
                p.field("port").field("name"),
                format!(
                    "port names in servers must be unique: {name:?} is used by an earlier server"
                ),
            );
        }
        let http = port
            .protocol
            .as_deref()
            .and_then(Protocol::parse)
            .is_some_and(Protocol::is_http);
        if !http
            && server
                .tls
                .as_ref()
                .is_some_and(|t| t.https_redirect == Some(true))
        {
            warn(
                &mut out,
                p.field("tls").field("httpsRedirect"),
                "tls.httpsRedirect only has an effect on HTTP servers",
            );
        }
    }
    out
}

fn check_server(out: &mut Diags, path: &FieldPath, server: &Server) {
    if server.hosts.is_empty() {
        error(
            out,
            path.field("hosts"),
            "a server needs at least one host, e.g. \"*/bookinfo.example.com\"",
        );
    }
    for (i, host) in server.hosts.iter().enumerate() {
        for problem in namespaced_host(host, true) {
            error(out, path.field("hosts").index(i), problem);
        }
    }
    let bind = server.bind.as_deref().unwrap_or("");
    let mut protocol = None;
    let mut port_ok = true;
    if let Some(port) = &server.port {
        let pp = path.field("port");
        let raw = port.protocol.as_deref().unwrap_or("");
        protocol = Protocol::parse(raw);
        if protocol.is_none() {
            port_ok = false;
            error(
                out,
                pp.field("protocol"),
                format!("invalid protocol {raw:?}: use one of {PROTOCOL_NAMES}"),
            );
        }
        let number = port.number.unwrap_or(0);
        if number != 0 || !bind.starts_with(UNIX_PREFIX) {
            port_ok &= (1..=65535).contains(&number);
            check_port(out, pp.field("number"), number);
        }
        if port.target_port.is_some_and(|t| t > 0) {
            port_ok = false;
            error(
                out,
                pp.field("targetPort"),
                "targetPort has no effect on Gateways: remove it",
            );
        }
        if port.name.as_deref().unwrap_or("").is_empty() {
            port_ok = false;
            error(
                out,
                pp.field("name"),
                "port name must be set, e.g. https-443",
            );
        }
        if let Some(sock) = bind.strip_prefix(UNIX_PREFIX) {
            if number != 0 {
                error(
                    out,
                    pp.field("number"),
                    "port number must be 0 for a unix domain socket bind",
                );
            }
            if let Err(e) = unix_path(sock) {
                error(out, path.field("bind"), e);
            }
        }
    }
    if !bind.is_empty() && !bind.starts_with(UNIX_PREFIX) {
        if let Err(e) = ip_address(bind) {
            error(
                out,
                path.field("bind"),
                format!("bind {e}: use an IP address or unix:///path"),
            );
        }
    }
    if let Some(tls) = &server.tls {
        check_server_tls(out, &path.field("tls"), tls);
    }
    let Some(protocol) = protocol.filter(|_| port_ok) else {
        return;
    };
    match &server.tls {
        None if protocol.is_tls() => {
            error(out, path.clone(), "HTTPS and TLS servers need tls settings, e.g. tls: {mode: SIMPLE, credentialName: my-cert}")
        }
        Some(tls) if !protocol.is_tls() => {
            if !protocol.is_http() {
                error(out, path.field("tls"), "only HTTPS, TLS and HTTP (for httpsRedirect) servers can have tls settings");
            } else if !is_passthrough(tls) || has_file_certs(tls) {
                error(
                    out,
                    path.field("tls"),
                    "a plain-text HTTP server can only carry tls.httpsRedirect: use protocol HTTPS to terminate TLS",
                );
            }
        }
        _ => {}
    }
}

/// Passthrough is the default (zero) mode.
fn is_passthrough(tls: &ServerTLSSettings) -> bool {
    matches!(
        tls.mode,
        None | Some(ServerTLSMode::Passthrough | ServerTLSMode::AutoPassthrough)
    )
}

fn set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

fn has_file_certs(tls: &ServerTLSSettings) -> bool {
    set(&tls.ca_certificates) || set(&tls.private_key) || set(&tls.server_certificate)
}

/// Server-side TLS of a Gateway server or Sidecar ingress listener.
pub(super) fn check_server_tls(out: &mut Diags, path: &FieldPath, tls: &ServerTLSSettings) {
    let mode = tls.mode.unwrap_or(ServerTLSMode::Passthrough);
    if matches!(
        tls.min_protocol_version,
        Some(TLSProtocol::Tlsv1_0 | TLSProtocol::Tlsv1_1)
    ) && tls.cipher_suites.is_empty()
    {
        warn(
            out,
            path.field("minProtocolVersion"),
            "TLS versions below 1.2 need cipherSuites set: the default suites no longer include ones they can use",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, cs) in tls.cipher_suites.iter().enumerate() {
        let p = path.field("cipherSuites").index(i);
        // Operators such as `-`/`+`/`!` prefixes belong to BoringSSL's expression syntax.
        let expression =
            cs.is_empty() || cs == "ALL" || !cs.starts_with(|c: char| c.is_alphanumeric());
        if !expression && !CIPHER_SUITES.contains(&cs.as_str()) {
            warn(out, p, format!("unknown cipher suite {cs:?} is ignored"));
        } else if !seen.insert(cs.as_str()) {
            warn(out, p, format!("duplicate cipher suite {cs:?} is ignored"));
        }
    }
    if mode == ServerTLSMode::IstioMutual {
        let fields = [
            ("serverCertificate", set(&tls.server_certificate)),
            ("privateKey", set(&tls.private_key)),
            ("caCertificates", set(&tls.ca_certificates)),
            ("tlsCertificates", !tls.tls_certificates.is_empty()),
            ("credentialName", set(&tls.credential_name)),
            ("credentialNames", !tls.credential_names.is_empty()),
        ];
        for (field, is_set) in fields {
            if is_set {
                error(
                    out,
                    path.field(field),
                    format!("ISTIO_MUTUAL uses the mesh's own certificates: remove {field}"),
                );
            }
        }
        return;
    }
    let credential = set(&tls.credential_name) || !tls.credential_names.is_empty();
    if matches!(
        mode,
        ServerTLSMode::Passthrough | ServerTLSMode::AutoPassthrough
    ) && (credential
        || has_file_certs(tls)
        || set(&tls.ca_crl)
        || !tls.tls_certificates.is_empty())
    {
        warn(
            out,
            path.clone(),
            format!(
                "{} mode does not terminate TLS: its certificates are ignored",
                mode.as_str()
            ),
        );
    }
    // The pairs among credentialName(s) and tlsCertificates are the schema's.
    let files = set(&tls.server_certificate) && set(&tls.private_key);
    if files && (credential || !tls.tls_certificates.is_empty()) {
        error(
            out,
            path.clone(),
            "use only one certificate source: credentialName, credentialNames, serverCertificate/privateKey or tlsCertificates",
        );
    }
    let terminates = matches!(
        mode,
        ServerTLSMode::Simple | ServerTLSMode::Mutual | ServerTLSMode::OptionalMutual
    );
    if terminates && !credential {
        let label = if mode == ServerTLSMode::Simple {
            "SIMPLE TLS"
        } else {
            "MUTUAL TLS"
        };
        if mode != ServerTLSMode::Simple && !set(&tls.ca_certificates) {
            error(
                out,
                path.field("caCertificates"),
                format!(
                    "{label} requires a client CA bundle (caCertificates), or use credentialName"
                ),
            );
        }
        if tls.tls_certificates.len() > 2 {
            warn(
                out,
                path.field("tlsCertificates"),
                format!("{label} can use at most 2 server certificates (one RSA, one ECDSA)"),
            );
        }
        if tls.tls_certificates.is_empty() {
            for (field, is_set) in [
                ("serverCertificate", set(&tls.server_certificate)),
                ("privateKey", set(&tls.private_key)),
            ] {
                if !is_set {
                    error(
                        out,
                        path.field(field),
                        format!("{label} requires {field}, or use credentialName"),
                    );
                }
            }
        }
        for (i, c) in tls.tls_certificates.iter().enumerate() {
            let p = path.field("tlsCertificates").index(i);
            for (field, is_set) in [
                ("serverCertificate", set(&c.server_certificate)),
                ("privateKey", set(&c.private_key)),
            ] {
                if !is_set {
                    error(out, p.field(field), format!("{label} requires {field}"));
                }
            }
        }
    }
    if set(&tls.ca_crl) {
        if set(&tls.credential_name) {
            error(
                out,
                path.field("caCrl"),
                "caCrl cannot be used with credentialName: put the CRL in the credential",
            );
        }
        if mode == ServerTLSMode::Simple {
            error(
                out,
                path.field("caCrl"),
                "caCrl has no effect with SIMPLE TLS (no client certificates are checked)",
            );
        }
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
