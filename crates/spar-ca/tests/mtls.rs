//! Both ends of mesh mTLS with SVIDs from the CA: real TLS handshakes over loopback TCP with
//! rustls, `SvidClientVerifier` on the server and `SvidServerVerifier` on the client. Each
//! side learns the other's SPIFFE ID; a peer from another CA, in another trust domain, not
//! on the allow-list, or without a certificate is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use spar_ca::tls::{peer_id, SvidClientVerifier, SvidServerVerifier};
use spar_ca::{Ca, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TD: &str = "cluster.local";

struct Svid {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn issue(ca: &Ca, ns: &str, sa: &str) -> Svid {
    let id = SpiffeId::new(ca.trust_domain(), ns, sa).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.subject_alt_names = vec![SanType::URI(Ia5String::try_from(id.to_string()).unwrap())];
    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
    let signed = ca.sign_csr(&csr, &id, Duration::from_secs(600)).unwrap();
    Svid {
        // What a workload sends: leaf and intermediates, not the root.
        chain: signed.pem[..signed.pem.len() - 1]
            .iter()
            .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
            .collect(),
        key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(svid: Svid, verifier: SvidClientVerifier) -> ServerConfig {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(svid.chain, svid.key)
        .unwrap()
}

fn client_config(svid: Option<Svid>, verifier: SvidServerVerifier) -> ClientConfig {
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match svid {
        Some(s) => b.with_client_auth_cert(s.chain, s.key).unwrap(),
        None => b.with_no_client_auth(),
    }
}

/// One connection: each side's view of the other (or its handshake error).
async fn handshake(
    server: ServerConfig,
    client: ClientConfig,
) -> (
    Result<Option<SpiffeId>, String>,
    Result<Option<SpiffeId>, String>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.ok();
        let certs = tls.get_ref().1.peer_certificates().unwrap_or(&[]).to_vec();
        Ok::<_, String>(peer_id(&certs, TD))
    });
    let connector = TlsConnector::from(Arc::new(client));
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("reviews.default.svc.cluster.local").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        // TLS 1.3: a client certificate the server refuses shows up on the first read.
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        let certs = tls.get_ref().1.peer_certificates().unwrap_or(&[]).to_vec();
        Ok::<_, String>(peer_id(&certs, TD))
    }
    .await;
    let server_side = server_side.await.unwrap();
    (server_side, client_side)
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "default", sa).unwrap()
}

#[tokio::test]
async fn both_sides_learn_each_others_identity() {
    let ca = Ca::generate(TD).unwrap();
    let roots = vec![ca.root().clone()];
    let server = server_config(
        issue(&ca, "default", "reviews"),
        SvidClientVerifier::new(roots.clone(), TD),
    );
    let client = client_config(
        Some(issue(&ca, "default", "productpage")),
        SvidServerVerifier::new(roots, TD).allow([id("reviews")]),
    );
    let (s, c) = handshake(server, client).await;
    assert_eq!(s.unwrap(), Some(id("productpage")));
    assert_eq!(c.unwrap(), Some(id("reviews")));
}

#[tokio::test]
async fn a_client_from_another_ca_is_refused() {
    let ca = Ca::generate(TD).unwrap();
    let other = Ca::generate(TD).unwrap();
    let server = server_config(
        issue(&ca, "default", "reviews"),
        SvidClientVerifier::new(vec![ca.root().clone()], TD),
    );
    let client = client_config(
        Some(issue(&other, "default", "productpage")),
        SvidServerVerifier::new(vec![ca.root().clone()], TD),
    );
    let (s, c) = handshake(server, client).await;
    // Both roots are named after the trust domain, so the chain fails on the signature.
    let err = s.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("BadSignature"),
        "{err}"
    );
    assert!(c.is_err());
}

#[tokio::test]
async fn a_server_in_another_trust_domain_is_refused() {
    let ca = Ca::generate("other.example").unwrap();
    let server = server_config(
        issue(&ca, "default", "reviews"),
        SvidClientVerifier::new(vec![ca.root().clone()], "other.example"),
    );
    let client = client_config(
        Some(issue(&ca, "default", "productpage")),
        SvidServerVerifier::new(vec![ca.root().clone()], TD),
    );
    let (_, c) = handshake(server, client).await;
    let err = c.unwrap_err();
    assert!(
        err.contains("WrongTrustDomain") && err.contains("other.example"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_not_on_the_allow_list_is_refused() {
    let ca = Ca::generate(TD).unwrap();
    let roots = vec![ca.root().clone()];
    let server = server_config(
        issue(&ca, "default", "ratings"),
        SvidClientVerifier::new(roots.clone(), TD),
    );
    let client = client_config(
        Some(issue(&ca, "default", "productpage")),
        SvidServerVerifier::new(roots, TD).allow([id("reviews")]),
    );
    let (_, c) = handshake(server, client).await;
    let err = c.unwrap_err();
    assert!(
        err.contains("NotAllowed") && err.contains("ratings"),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let ca = Ca::generate(TD).unwrap();
    let roots = vec![ca.root().clone()];
    let server = server_config(
        issue(&ca, "default", "reviews"),
        SvidClientVerifier::new(roots.clone(), TD),
    );
    let client = client_config(None, SvidServerVerifier::new(roots, TD));
    let (s, c) = handshake(server, client).await;
    let err = s.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    assert!(c.is_err());
}
