//! `x-forwarded-client-cert` (XFCC), as Envoy's HTTP connection manager handles it: by
//! `forward_client_cert_details` the header is removed (SANITIZE, Envoy's default), passed
//! on (FORWARD_ONLY when the client connection is mutual TLS, ALWAYS_FORWARD_ONLY always),
//! extended (APPEND_FORWARD) or replaced (SANITIZE_SET) with one element describing the
//! client's certificate: `By=<this proxy's URI SAN>;Hash=<SHA-256 of the client
//! certificate, hex>` then, as `set_current_client_cert_details` asks, `Cert="…"`,
//! `Chain="…"` (URL-encoded PEM), `Subject="…"` (RFC 2253), `URI=…` and `DNS=…` (one per
//! name). Istio's sidecars append on inbound (subject, URI, DNS), so an application learns
//! its caller's SPIFFE identity; its gateways replace.
//!
//! The element depends only on the connection, so it is built once per connection.

use http::{HeaderMap, HeaderValue};
use rustls_pki_types::CertificateDer;

use crate::config::listener::{Xfcc, XfccMode};

const HEADER: &str = "x-forwarded-client-cert";

/// What the HTTP layer knows of the TLS under it.
#[derive(Debug, Default)]
pub struct TlsDownstream {
    /// The client's certificates, leaf first; none without mutual TLS.
    pub peer_chain: Vec<CertificateDer<'static>>,
    /// This proxy's certificate chain (PEM) on the connection.
    pub local_chain_pem: Option<std::sync::Arc<crate::config::tls::CertKey>>,
    /// The SNI the client sent (RBAC `requested_server_name`).
    pub sni: Option<String>,
}

/// The element for this connection, when the manager adds one and the client presented a
/// certificate.
pub fn element(xfcc: &Xfcc, tls: Option<&TlsDownstream>) -> Option<HeaderValue> {
    if !matches!(xfcc.mode, XfccMode::AppendForward | XfccMode::SanitizeSet) {
        return None;
    }
    let tls = tls?;
    let leaf = tls.peer_chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let mut out = String::new();
    if let Some(by) = tls
        .local_chain_pem
        .as_ref()
        .and_then(|ck| local_uri(&ck.chain))
    {
        out.push_str("By=");
        out.push_str(&by);
        out.push(';');
    }
    out.push_str("Hash=");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref());
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    if xfcc.cert {
        out.push_str(";Cert=\"");
        out.push_str(&url_encode(&pem(leaf)));
        out.push('"');
    }
    if xfcc.chain {
        out.push_str(";Chain=\"");
        let all: String = tls.peer_chain.iter().map(pem).collect();
        out.push_str(&url_encode(&all));
        out.push('"');
    }
    if xfcc.subject {
        out.push_str(";Subject=\"");
        out.push_str(&rfc2253(cert.subject()).replace('"', "\\\""));
        out.push('"');
    }
    let sans = crate::tls::peer_sans(leaf);
    if xfcc.uri {
        for (_, u) in sans
            .iter()
            .filter(|(k, _)| *k == crate::config::tls::SanKind::Uri)
        {
            out.push_str(";URI=");
            out.push_str(u);
        }
    }
    if xfcc.dns {
        for (_, d) in sans
            .iter()
            .filter(|(k, _)| *k == crate::config::tls::SanKind::Dns)
        {
            out.push_str(";DNS=");
            out.push_str(d);
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// Applies the manager's mode to a request's headers. `mtls`: the client presented a
/// certificate on this connection.
pub fn apply(h: &mut HeaderMap, xfcc: &Xfcc, mtls: bool, element: Option<&HeaderValue>) {
    match xfcc.mode {
        XfccMode::AlwaysForwardOnly => {}
        XfccMode::ForwardOnly if mtls => {}
        XfccMode::AppendForward if mtls => {
            let Some(e) = element else { return };
            let v = match h.get(HEADER).and_then(|v| v.to_str().ok()) {
                Some(prev) => {
                    HeaderValue::from_str(&format!("{prev},{}", e.to_str().unwrap_or("")))
                        .unwrap_or_else(|_| e.clone())
                }
                None => e.clone(),
            };
            h.insert(HEADER, v);
        }
        XfccMode::SanitizeSet if mtls => match element {
            Some(e) => {
                h.insert(HEADER, e.clone());
            }
            None => {
                h.remove(HEADER);
            }
        },
        _ => {
            h.remove(HEADER);
        }
    }
}

/// The first URI SAN of the first certificate in `chain_pem`.
pub(crate) fn local_uri(chain_pem: &[u8]) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(chain_pem).next()?.ok()?;
    crate::tls::peer_sans(&der)
        .into_iter()
        .find(|(k, _)| *k == crate::config::tls::SanKind::Uri)
        .map(|(_, u)| u)
}

/// A certificate as Envoy hands it to authorizers: PEM, URL-encoded.
pub(crate) fn url_encoded_pem(der: &CertificateDer<'_>) -> String {
    url_encode(&pem(der))
}

fn pem(der: &CertificateDer<'_>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.as_ref()), config)
}

/// Percent-encodes all but unreserved characters (RFC 3986), as a header value can carry.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The subject in RFC 2253 form: attributes last to first, `,` between them.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut parts = Vec::new();
    for rdn in name.iter_rdn() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let key = x509_parser::objects::oid2abbrev(a.attr_type(), registry)
                    .map(str::to_string)
                    .unwrap_or_else(|_| a.attr_type().to_id_string());
                let value = a.as_str().unwrap_or("");
                format!("{key}={}", escape_rdn(value))
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    parts.reverse();
    parts.join(",")
}

/// RFC 2253 escaping of an attribute value.
fn escape_rdn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xfcc(mode: XfccMode) -> Xfcc {
        Xfcc {
            mode,
            subject: true,
            uri: true,
            dns: true,
            ..Xfcc::default()
        }
    }

    #[test]
    fn modes_follow_envoy() {
        let e = HeaderValue::from_static("By=a;Hash=b");
        let prev = || {
            let mut h = HeaderMap::new();
            h.insert(HEADER, HeaderValue::from_static("By=x;Hash=y"));
            h
        };
        let run = |mode, mtls| {
            let mut h = prev();
            apply(&mut h, &xfcc(mode), mtls, Some(&e));
            h.get(HEADER).map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(run(XfccMode::Sanitize, true), None);
        assert_eq!(
            run(XfccMode::ForwardOnly, true).as_deref(),
            Some("By=x;Hash=y")
        );
        assert_eq!(run(XfccMode::ForwardOnly, false), None);
        assert_eq!(
            run(XfccMode::AppendForward, true).as_deref(),
            Some("By=x;Hash=y,By=a;Hash=b")
        );
        assert_eq!(run(XfccMode::AppendForward, false), None);
        assert_eq!(
            run(XfccMode::SanitizeSet, true).as_deref(),
            Some("By=a;Hash=b")
        );
        assert_eq!(run(XfccMode::SanitizeSet, false), None);
        assert_eq!(
            run(XfccMode::AlwaysForwardOnly, false).as_deref(),
            Some("By=x;Hash=y")
        );
    }

    #[test]
    fn url_encoding() {
        assert_eq!(
            url_encode("-----BEGIN A-----\n+/="),
            "-----BEGIN%20A-----%0A%2B%2F%3D"
        );
    }
}
