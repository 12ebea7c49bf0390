//! TLS settings as the proxy keeps them: a filter chain's `DownstreamTlsContext` and the
//! SDS `Secret`s it names, converted from Envoy's protos with errors that name the field.
//! Certificates stay PEM here; [`crate::tls`] turns them into rustls configurations.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, secret, subject_alt_name_matcher::SanType,
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, Secret,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::matcher::StringMatch;
use super::ConfigError;

pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// A certificate chain and its private key (PEM).
#[derive(Debug, PartialEq)]
pub struct CertKey {
    pub chain: Vec<u8>,
    pub key: Vec<u8>,
}

/// What a peer's certificate must chain to, and which names it must carry.
#[derive(Debug, Default)]
pub struct Validation {
    /// Trusted CA certificates (PEM).
    pub trusted_ca: Vec<u8>,
    pub sans: Vec<SanMatch>,
}

/// `match_typed_subject_alt_names`: a SAN of `kind` matching `value`.
#[derive(Debug, Clone)]
pub struct SanMatch {
    pub kind: SanKind,
    pub value: StringMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanKind {
    Dns,
    Uri,
    Email,
    Ip,
}

/// Inline, or an SDS secret by name (resolved from the snapshot when used).
#[derive(Debug)]
pub enum Source<T> {
    Inline(Arc<T>),
    Sds(String),
}

/// A filter chain's TLS termination.
#[derive(Debug)]
pub struct DownstreamTls {
    pub cert: Source<CertKey>,
    pub validation: Option<Source<Validation>>,
    /// SAN matchers from a combined validation context's default part, applied on top of
    /// an SDS validation context.
    pub extra_sans: Vec<SanMatch>,
    pub require_client_cert: bool,
    pub alpn: Vec<Vec<u8>>,
}

impl DownstreamTls {
    /// The SDS names this context uses.
    pub fn sds_names(&self) -> impl Iterator<Item = &str> {
        let cert = match &self.cert {
            Source::Sds(n) => Some(n.as_str()),
            Source::Inline(_) => None,
        };
        let validation = match &self.validation {
            Some(Source::Sds(n)) => Some(n.as_str()),
            _ => None,
        };
        cert.into_iter().chain(validation)
    }
}

/// An SDS secret's contents.
#[derive(Debug, Default)]
pub struct SecretData {
    pub cert: Option<Arc<CertKey>>,
    pub validation: Option<Arc<Validation>>,
}

fn data(
    ds: &Option<DataSource>,
    what: &dyn Fn() -> String,
    field: &str,
) -> Result<Vec<u8>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        what: what(),
        why: format!("{field}: {why}"),
    };
    match ds.as_ref().and_then(|d| d.specifier.as_ref()) {
        Some(data_source::Specifier::InlineBytes(b)) => Ok(b.clone()),
        Some(data_source::Specifier::InlineString(s)) => Ok(s.clone().into_bytes()),
        Some(data_source::Specifier::Filename(f)) => {
            std::fs::read(f).map_err(|e| invalid(format!("cannot read {f}: {e}")))
        }
        Some(data_source::Specifier::EnvironmentVariable(v)) => std::env::var(v)
            .map(String::into_bytes)
            .map_err(|_| invalid(format!("environment variable {v} is not set"))),
        None => Err(invalid("empty".into())),
    }
}

fn validation(
    v: &CertificateValidationContext,
    what: &dyn Fn() -> String,
) -> Result<Validation, ConfigError> {
    let trusted_ca = match &v.trusted_ca {
        Some(_) => data(&v.trusted_ca, what, "trusted_ca")?,
        None => Vec::new(),
    };
    Ok(Validation {
        trusted_ca,
        sans: sans(v, what)?,
    })
}

fn sans(
    v: &CertificateValidationContext,
    what: &dyn Fn() -> String,
) -> Result<Vec<SanMatch>, ConfigError> {
    v.match_typed_subject_alt_names
        .iter()
        .map(|m| {
            let kind = match SanType::try_from(m.san_type) {
                Ok(SanType::Dns) => SanKind::Dns,
                Ok(SanType::Uri) => SanKind::Uri,
                Ok(SanType::Email) => SanKind::Email,
                Ok(SanType::IpAddress) => SanKind::Ip,
                _ => {
                    return Err(ConfigError::Unsupported {
                        what: what(),
                        feature: format!(
                            "subject alt name type {} in match_typed_subject_alt_names",
                            m.san_type
                        ),
                    })
                }
            };
            let value = m.matcher.as_ref().ok_or_else(|| ConfigError::Invalid {
                what: what(),
                why: "match_typed_subject_alt_names entry without a matcher".into(),
            })?;
            Ok(SanMatch {
                kind,
                value: StringMatch::from_proto(value, what)?,
            })
        })
        .collect()
}

/// A `transport_socket` on a filter chain: TLS termination, or an error for anything else.
pub fn downstream(
    ts: &Any,
    name: &str,
    what: &dyn Fn() -> String,
) -> Result<DownstreamTls, ConfigError> {
    if name != TLS_TRANSPORT_SOCKET && !ts.type_url.ends_with("DownstreamTlsContext") {
        return Err(ConfigError::Unsupported {
            what: what(),
            feature: format!("transport socket {name:?} (only {TLS_TRANSPORT_SOCKET})"),
        });
    }
    let ctx =
        DownstreamTlsContext::decode(ts.value.as_slice()).map_err(|e| ConfigError::Invalid {
            what: what(),
            why: format!("DownstreamTlsContext does not decode: {e}"),
        })?;
    let common = ctx.common_tls_context.unwrap_or_default();
    let (validation, extra_sans) = validation_of(&common, what)?;
    Ok(DownstreamTls {
        cert: cert_of(&common, what)?,
        validation,
        extra_sans,
        require_client_cert: ctx.require_client_certificate.is_some_and(|b| b.value),
        alpn: common
            .alpn_protocols
            .iter()
            .map(|p| p.clone().into_bytes())
            .collect(),
    })
}

fn cert_of(
    common: &CommonTlsContext,
    what: &dyn Fn() -> String,
) -> Result<Source<CertKey>, ConfigError> {
    if let Some(c) = common.tls_certificates.first() {
        return Ok(Source::Inline(Arc::new(CertKey {
            chain: data(
                &c.certificate_chain,
                what,
                "tls_certificates.certificate_chain",
            )?,
            key: data(&c.private_key, what, "tls_certificates.private_key")?,
        })));
    }
    match common.tls_certificate_sds_secret_configs.first() {
        Some(s) => Ok(Source::Sds(s.name.clone())),
        None => Err(ConfigError::Invalid {
            what: what(),
            why: "TLS context has no certificate (tls_certificates or tls_certificate_sds_secret_configs)".into(),
        }),
    }
}

type ValidationOf = (Option<Source<Validation>>, Vec<SanMatch>);

fn validation_of(
    common: &CommonTlsContext,
    what: &dyn Fn() -> String,
) -> Result<ValidationOf, ConfigError> {
    Ok(match &common.validation_context_type {
        None => (None, Vec::new()),
        Some(ValidationContextType::ValidationContext(v)) => (
            Some(Source::Inline(Arc::new(validation(v, what)?))),
            Vec::new(),
        ),
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            (Some(Source::Sds(s.name.clone())), Vec::new())
        }
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            let extra = match &c.default_validation_context {
                Some(d) => sans(d, what)?,
                None => Vec::new(),
            };
            let sds = c
                .validation_context_sds_secret_config
                .as_ref()
                .map(|s| Source::Sds(s.name.clone()));
            (sds, extra)
        }
        Some(_) => {
            return Err(ConfigError::Unsupported {
                what: what(),
                feature: "this kind of validation context".into(),
            })
        }
    })
}

/// An SDS `Secret`'s contents.
pub fn secret(s: &Secret) -> Result<SecretData, ConfigError> {
    let what = || format!("secret {:?}", s.name);
    match &s.r#type {
        Some(secret::Type::TlsCertificate(c)) => Ok(SecretData {
            cert: Some(Arc::new(CertKey {
                chain: data(
                    &c.certificate_chain,
                    &what,
                    "tls_certificate.certificate_chain",
                )?,
                key: data(&c.private_key, &what, "tls_certificate.private_key")?,
            })),
            validation: None,
        }),
        Some(secret::Type::ValidationContext(v)) => Ok(SecretData {
            cert: None,
            validation: Some(Arc::new(validation(v, &what)?)),
        }),
        _ => Err(ConfigError::Unsupported {
            what: what(),
            feature: "secret type (only tls_certificate and validation_context)".into(),
        }),
    }
}

/// A cluster's (or one transport-socket match's) TLS origination.
#[derive(Debug)]
pub struct UpstreamTls {
    /// The SNI to send; empty: none (the connection is to an address).
    pub sni: String,
    pub alpn: Vec<Vec<u8>>,
    /// A client certificate (mutual TLS), when the context has one.
    pub cert: Option<Source<CertKey>>,
    /// What the server's certificate must chain to; `None`: not verified (Envoy's
    /// behaviour without a validation context).
    pub validation: Option<Source<Validation>>,
    pub extra_sans: Vec<SanMatch>,
}

impl UpstreamTls {
    /// The SDS names this context uses.
    pub fn sds_names(&self) -> impl Iterator<Item = &str> {
        let cert = match &self.cert {
            Some(Source::Sds(n)) => Some(n.as_str()),
            _ => None,
        };
        let validation = match &self.validation {
            Some(Source::Sds(n)) => Some(n.as_str()),
            _ => None,
        };
        cert.into_iter().chain(validation)
    }
}

/// A cluster's `transport_socket`: TLS origination, or `None` for plaintext
/// (`envoy.transport_sockets.raw_buffer`).
pub fn upstream(
    ts: &envoy_types::pb::envoy::config::core::v3::TransportSocket,
    what: &dyn Fn() -> String,
) -> Result<Option<UpstreamTls>, ConfigError> {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    let any = match &ts.config_type {
        Some(ConfigType::TypedConfig(a)) => a.clone(),
        None => Any::default(),
    };
    if ts.name == "envoy.transport_sockets.raw_buffer" || any.type_url.ends_with(".RawBuffer") {
        return Ok(None);
    }
    if ts.name != TLS_TRANSPORT_SOCKET && !any.type_url.ends_with("UpstreamTlsContext") {
        return Err(ConfigError::Unsupported {
            what: what(),
            feature: format!(
                "transport socket {:?} (only {TLS_TRANSPORT_SOCKET} and raw_buffer)",
                ts.name
            ),
        });
    }
    let ctx =
        UpstreamTlsContext::decode(any.value.as_slice()).map_err(|e| ConfigError::Invalid {
            what: what(),
            why: format!("UpstreamTlsContext does not decode: {e}"),
        })?;
    let common = ctx.common_tls_context.unwrap_or_default();
    let has_cert = !common.tls_certificates.is_empty()
        || !common.tls_certificate_sds_secret_configs.is_empty();
    let cert = if has_cert {
        Some(cert_of(&common, what)?)
    } else {
        None
    };
    let (validation, extra_sans) = validation_of(&common, what)?;
    Ok(Some(UpstreamTls {
        sni: ctx.sni,
        alpn: common
            .alpn_protocols
            .iter()
            .map(|p| p.clone().into_bytes())
            .collect(),
        cert,
        validation,
        extra_sans,
    }))
}
