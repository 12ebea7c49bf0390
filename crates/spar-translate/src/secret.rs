//! SDS secrets for gateways: each `credentialName` an HTTPS server names, read from the
//! Kubernetes `Secret` of that name in the gateway's namespace (`tls.crt`/`tls.key`, or
//! `cert`/`key`), as a TLS certificate secret of the same name; a CA (`ca.crt` or
//! `cacert`) becomes `<name>-cacert`, the validation context MUTUAL servers ask for.
//! A secret that is missing or not valid base64 is left out, so the proxy keeps waiting
//! for it instead of serving a wrong certificate.

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, Secret, TlsCertificate,
};
use spar_model::resource::Body;
use spar_model::Kind;

use crate::Ctx;

/// Standard base64 (with or without padding, whitespace ignored), as Kubernetes stores
/// `data` values.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn inline(bytes: Vec<u8>) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes)),
        ..Default::default()
    })
}

/// Secrets for `credential_names` (deduplicated by the caller's sort).
pub fn secrets(ctx: &Ctx<'_>, credential_names: &[String]) -> Vec<Secret> {
    let mut out = Vec::new();
    for name in credential_names {
        let Some(data) = ctx
            .config
            .of_kind(Kind::Secret)
            .filter(|r| r.meta.name == *name && r.meta.namespace == ctx.node.namespace)
            .find_map(|r| match &r.body {
                Body::Secret(s) => Some(&s.data),
                _ => None,
            })
        else {
            continue;
        };
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| data.get(*k))
                .and_then(|v| base64_decode(v))
        };
        if let (Some(cert), Some(key)) = (get(&["tls.crt", "cert"]), get(&["tls.key", "key"])) {
            out.push(Secret {
                name: name.clone(),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: inline(cert),
                    private_key: inline(key),
                    ..Default::default()
                })),
            });
        }
        if let Some(ca) = get(&["ca.crt", "cacert"]) {
            out.push(Secret {
                name: format!("{name}-cacert"),
                r#type: Some(secret::Type::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: inline(ca),
                        ..Default::default()
                    },
                )),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn decodes_standard_base64() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("YQ==\n").as_deref(), Some(&b"a"[..]));
        assert!(base64_decode("a*b").is_none());
    }
}
