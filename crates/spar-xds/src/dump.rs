//! One resource of `/debug/config_dump` as JSON: name, type URL, version, its summary
//! lines (`spar_translate::summary`, what `spar ctl proxy-config` prints), its protobuf
//! debug form, and the base64 of its encoded bytes (envoy-types has no JSON mapping, so the
//! bytes are how a tool gets the exact resource). Secrets carry neither body nor bytes:
//! they hold private keys. Their public parts are there instead (`public`: the certificate
//! chain and trusted CA bundle as PEM), for `spar ctl proxy-config <proxy> secrets`.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use prost::Message;
use spar_translate::{type_url, XdsResources};

use crate::resources::EncodedResource;

/// The short names `?type=` accepts, with their type URLs.
pub const TYPES: [(&str, &str); 5] = [
    ("clusters", type_url::CLUSTER),
    ("endpoints", type_url::ENDPOINT),
    ("listeners", type_url::LISTENER),
    ("routes", type_url::ROUTE),
    ("secrets", type_url::SECRET),
];

/// The type URL for a `?type=` value (short name or the URL itself).
pub fn type_filter(value: &str) -> Option<&'static str> {
    TYPES
        .iter()
        .find(|(short, url)| *short == value || *url == value)
        .map(|(_, url)| *url)
}

pub fn dump(name: &str, r: &EncodedResource) -> serde_json::Value {
    let v = r.value();
    let mut one = XdsResources::default();
    let decoded = match r.type_url() {
        type_url::CLUSTER => Cluster::decode(v).map(|m| {
            let body = format!("{m:?}");
            one.clusters.push(m);
            body
        }),
        type_url::ENDPOINT => ClusterLoadAssignment::decode(v).map(|m| {
            let body = format!("{m:?}");
            one.endpoints.push(m);
            body
        }),
        type_url::LISTENER => Listener::decode(v).map(|m| {
            let body = format!("{m:?}");
            one.listeners.push(m);
            body
        }),
        type_url::ROUTE => RouteConfiguration::decode(v).map(|m| {
            let body = format!("{m:?}");
            one.routes.push(m);
            body
        }),
        type_url::SECRET => Secret::decode(v).map(|m| {
            one.secrets.push(m);
            "(secret contents withheld)".to_string()
        }),
        _ => Ok(String::new()),
    };
    let body = decoded.unwrap_or_else(|e| format!("(cannot decode: {e})"));
    let secret = r.type_url() == type_url::SECRET;
    let mut out = serde_json::json!({
        "name": name,
        "version": &*r.version,
        "type_url": r.type_url(),
        "bytes": v.len(),
        "summary": summary_lines(&one),
        "resource": body,
        "base64": if secret { String::new() } else { base64(v) },
    });
    if let Some(s) = one.secrets.first() {
        out["public"] = public_parts(s);
    }
    out
}

/// A secret's certificates without its key: `cert_chain` and `trusted_ca` as PEM text
/// (empty when the secret has none, or refers to files).
fn public_parts(s: &Secret) -> serde_json::Value {
    use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type;
    fn inline(d: &Option<DataSource>) -> String {
        match d.as_ref().and_then(|d| d.specifier.as_ref()) {
            Some(Specifier::InlineBytes(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Specifier::InlineString(t)) => t.clone(),
            _ => String::new(),
        }
    }
    let (chain, ca) = match &s.r#type {
        Some(Type::TlsCertificate(c)) => (inline(&c.certificate_chain), String::new()),
        Some(Type::ValidationContext(v)) => (String::new(), inline(&v.trusted_ca)),
        _ => (String::new(), String::new()),
    };
    serde_json::json!({ "cert_chain": chain, "trusted_ca": ca })
}

/// The summary of one resource without the per-type section headers (`clusters:`, ...),
/// which are the only unindented lines of a summary.
fn summary_lines(one: &XdsResources) -> Vec<String> {
    spar_translate::summary::render(one)
        .lines()
        .filter(|l| l.starts_with(' '))
        .map(str::to_string)
        .collect()
}

/// Standard base64 with padding (RFC 4648); a few lines rather than a dependency.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes [`base64`]'s output (what `spar ctl` reads back from a dump); `None` on any
/// character outside the alphabet or a bad length.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64(&bytes)), Some(bytes));
        }
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("ab!d"), None);
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn type_filter_takes_short_names_and_urls() {
        assert_eq!(type_filter("clusters"), Some(type_url::CLUSTER));
        assert_eq!(type_filter(type_url::ROUTE), Some(type_url::ROUTE));
        assert_eq!(type_filter("pods"), None);
    }
}
