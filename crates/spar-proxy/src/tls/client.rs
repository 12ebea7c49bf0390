//! TLS origination: rustls client configurations for upstream TLS contexts, built once per
//! (context, secrets generation), with Envoy's verification rules rather than a browser's:
//! the server's chain is checked against the context's trusted CA and its SANs against the
//! context's matchers, and the SNI is not required to be among the certificate's names
//! (mesh certificates carry a SPIFFE URI, not the host name). Without a validation context
//! the server's certificate is not verified, as in Envoy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::{certificates, peer_sans, roots, sans_pass, TlsError};
use crate::config::tls::{SanMatch, Source, UpstreamTls};
use crate::config::Snapshot;

/// Client configurations by (context address, secrets generation).
#[derive(Default)]
pub struct ClientConfigs {
    built: Mutex<HashMap<(usize, u64), Arc<ClientConfig>>>,
}

impl std::fmt::Debug for ClientConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientConfigs")
    }
}

impl ClientConfigs {
    pub fn get(
        &self,
        tls: &Arc<UpstreamTls>,
        snap: &Snapshot,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let key = (Arc::as_ptr(tls) as usize, snap.secrets_generation);
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = built.get(&key) {
            return Ok(c.clone());
        }
        let config = Arc::new(client_config(tls, snap)?);
        if built.len() > 1024 {
            built.clear();
        }
        built.insert(key, config.clone());
        Ok(config)
    }
}

/// The name to present and verify against: the context's SNI, else the address.
pub fn server_name(tls: &UpstreamTls, authority: &str) -> Option<ServerName<'static>> {
    if !tls.sni.is_empty() {
        return ServerName::try_from(tls.sni.clone()).ok();
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).ok()
}

fn client_config(tls: &UpstreamTls, snap: &Snapshot) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let validation = match &tls.validation {
        None => None,
        Some(Source::Inline(v)) => Some(v.clone()),
        Some(Source::Sds(name)) => Some(
            snap.secret(name)
                .ok_or_else(|| TlsError::MissingSecret(name.clone()))?
                .validation
                .clone()
                .ok_or_else(|| TlsError::WrongSecret(name.clone(), "validation context"))?,
        ),
    };
    let roots = match validation.as_ref().filter(|v| !v.trusted_ca.is_empty()) {
        Some(v) => Some(Arc::new(roots(&v.trusted_ca)?)),
        None => None,
    };
    let verifier = Arc::new(EnvoyVerifier {
        roots,
        sans: tls
            .extra_sans
            .iter()
            .chain(validation.iter().flat_map(|v| v.sans.iter()))
            .cloned()
            .collect(),
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.cert {
        None => builder.with_no_client_auth(),
        Some(src) => {
            let ck = match src {
                Source::Inline(c) => c.clone(),
                Source::Sds(name) => snap
                    .secret(name)
                    .ok_or_else(|| TlsError::MissingSecret(name.clone()))?
                    .cert
                    .clone()
                    .ok_or_else(|| TlsError::WrongSecret(name.clone(), "certificate"))?,
            };
            let chain = certificates(&ck.chain)?;
            let key =
                PrivateKeyDer::from_pem_slice(&ck.key).map_err(|e| TlsError::Key(e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Rustls(e.to_string()))?
        }
    };
    config.alpn_protocols = tls.alpn.clone();
    config.enable_sni = !tls.sni.is_empty();
    Ok(config)
}

#[derive(Debug)]
struct EnvoyVerifier {
    roots: Option<Arc<RootCertStore>>,
    sans: Vec<SanMatch>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EnvoyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        let refs: Vec<&SanMatch> = self.sans.iter().collect();
        if !sans_pass(&refs, &peer_sans(end_entity)) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
