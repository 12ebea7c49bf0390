//! The CA end to end: a real TLS gRPC server on a free port, real clients calling Istio's
//! `CreateCertificate` with fresh CSRs, and the returned chains checked by `verify_svid` and
//! by `openssl verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use spar_ca::proto::{IstioCertificateRequest, IstioCertificateResponse, CREATE_CERTIFICATE_PATH};
use spar_ca::{
    verify_svid, AnyOf, Ca, CaService, PeerCertificate, SpiffeId, StaticTokens, TtlPolicy,
};
use tokio::net::TcpListener;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

const TD: &str = "cluster.local";
const TOKEN: &str = "t0ken-reviews";

struct Running {
    addr: std::net::SocketAddr,
    ca: Arc<Ca>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    let ca = Arc::new(Ca::generate(TD).unwrap());
    let mut tokens = StaticTokens::new();
    tokens.insert(TOKEN, SpiffeId::new(TD, "default", "reviews").unwrap());
    let auth = AnyOf(vec![
        Box::new(tokens),
        Box::new(PeerCertificate::new(vec![ca.root().clone()], TD)),
    ]);
    let ttl = TtlPolicy {
        default: Duration::from_secs(3600),
        max: Duration::from_secs(24 * 3600),
    };
    let svc = CaService::new(ca.clone(), Box::new(auth), ttl);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = spar_ca::server::tls_config(&ca).unwrap();
    tokio::spawn(async move {
        spar_ca::server::serve(listener, tls, svc, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        addr,
        ca,
        _stop: stop,
    }
}

async fn connect(run: &Running, client_identity: Option<Identity>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(run.ca.root_pem()))
        .domain_name("istiod.istio-system.svc");
    if let Some(id) = client_identity {
        tls = tls.identity(id);
    }
    Channel::from_shared(format!("https://{}", run.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn create(
    channel: Channel,
    csr: String,
    validity: i64,
    token: Option<&str>,
) -> Result<IstioCertificateResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut req = Request::new(IstioCertificateRequest {
        csr,
        validity_duration: validity,
        metadata: None,
    });
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    // Istio agents send this; the CA accepts and ignores it.
    req.metadata_mut()
        .insert("clusterid", "Kubernetes".parse().unwrap());
    grpc.unary(
        req,
        PathAndQuery::from_static(CREATE_CERTIFICATE_PATH),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner())
}

fn csr_for(uri: &str, key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(uri).unwrap())];
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn ders(chain: &[String]) -> Vec<CertificateDer<'static>> {
    chain
        .iter()
        .map(|p| CertificateDer::from_pem_slice(p.as_bytes()).unwrap())
        .collect()
}

fn lifetime_secs(leaf: &CertificateDer<'_>) -> i64 {
    let (_, cert) = X509Certificate::from_der(leaf).unwrap();
    cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()
}

/// `openssl verify -CAfile root.pem -untrusted chain.pem leaf.pem`, if openssl is installed.
fn openssl_verify(dir: &Path, chain: &[String]) {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var_os("SPAR_REQUIRE_PEERS").is_none(),
            "openssl is required (SPAR_REQUIRE_PEERS is set) but not installed"
        );
        eprintln!("skipping the openssl cross-check: openssl is not installed");
        return;
    }
    let root = dir.join("root.pem");
    let untrusted = dir.join("chain.pem");
    let leaf = dir.join("leaf.pem");
    std::fs::write(&root, chain.last().unwrap()).unwrap();
    std::fs::write(&untrusted, chain[1..].concat()).unwrap();
    std::fs::write(&leaf, &chain[0]).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&untrusted)
        .arg("-purpose")
        .arg("sslclient")
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_workload_with_a_token_gets_its_svid_over_tls() {
    let run = start().await;
    let key = KeyPair::generate().unwrap();
    let me = "spiffe://cluster.local/ns/default/sa/reviews";
    let resp = create(connect(&run, None).await, csr_for(me, &key), 0, Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(resp.cert_chain.len(), 2, "leaf then root");
    assert_eq!(resp.cert_chain.last().unwrap(), &run.ca.root_pem());
    let chain = ders(&resp.cert_chain);
    let id = verify_svid(&chain, &[run.ca.root().clone()], TD, UnixTime::now()).unwrap();
    assert_eq!(id.to_string(), me);
    // Default TTL (1h here) plus the one-minute backdate.
    assert_eq!(lifetime_secs(&chain[0]), 3600 + 60);

    let tmp = tempfile::tempdir().unwrap();
    openssl_verify(tmp.path(), &resp.cert_chain);
}

#[tokio::test]
async fn asking_for_another_service_account_is_refused() {
    let run = start().await;
    let key = KeyPair::generate().unwrap();
    let err = create(
        connect(&run, None).await,
        csr_for("spiffe://cluster.local/ns/default/sa/ratings", &key),
        0,
        Some(TOKEN),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.message().contains("ratings"), "{err}");
}

#[tokio::test]
async fn unauthenticated_and_unknown_callers_are_refused() {
    let run = start().await;
    let key = KeyPair::generate().unwrap();
    let csr = csr_for("spiffe://cluster.local/ns/default/sa/reviews", &key);
    let err = create(connect(&run, None).await, csr.clone(), 0, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = create(connect(&run, None).await, csr, 0, Some("guess"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
}

#[tokio::test]
async fn oversized_and_garbage_requests_are_refused() {
    let run = start().await;
    let huge = "A".repeat(spar_ca::server::MAX_REQUEST_BYTES + 1);
    let err = create(connect(&run, None).await, huge, 0, Some(TOKEN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err}");
    let err = create(
        connect(&run, None).await,
        "not a csr".into(),
        0,
        Some(TOKEN),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn ttl_is_honoured_and_bounded() {
    let run = start().await;
    let key = KeyPair::generate().unwrap();
    let csr = csr_for("spiffe://cluster.local/ns/default/sa/reviews", &key);
    let resp = create(connect(&run, None).await, csr.clone(), 120, Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(lifetime_secs(&ders(&resp.cert_chain)[0]), 120 + 60);
    let err = create(connect(&run, None).await, csr, 48 * 3600, Some(TOKEN))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn a_workload_renews_with_its_current_certificate() {
    let run = start().await;
    let me = "spiffe://cluster.local/ns/default/sa/reviews";
    let key = KeyPair::generate().unwrap();
    let first = create(connect(&run, None).await, csr_for(me, &key), 0, Some(TOKEN))
        .await
        .unwrap();

    // Renew over mTLS with the first certificate, no token.
    let identity = Identity::from_pem(first.cert_chain.concat(), key.serialize_pem());
    let new_key = KeyPair::generate().unwrap();
    let channel = connect(&run, Some(identity)).await;
    let second = create(channel.clone(), csr_for(me, &new_key), 0, None)
        .await
        .unwrap();
    let chain = ders(&second.cert_chain);
    let id = verify_svid(&chain, &[run.ca.root().clone()], TD, UnixTime::now()).unwrap();
    assert_eq!(id.to_string(), me);
    assert_ne!(first.cert_chain[0], second.cert_chain[0]);

    // The certificate entitles to its own identity only.
    let err = create(
        channel,
        csr_for("spiffe://cluster.local/ns/default/sa/ratings", &new_key),
        0,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
}

#[tokio::test]
async fn the_client_module_obtains_and_renews_an_svid() {
    use spar_ca::client::{chain_der, generate_csr, CaClient};
    let run = start().await;
    let me = SpiffeId::new(TD, "default", "reviews").unwrap();
    let addr = format!("https://{}", run.addr);
    let root = run.ca.root_pem();
    let (csr, key) = generate_csr(&me).unwrap();
    let mut client = CaClient::connect(&addr, &root, "localhost", None)
        .await
        .unwrap();
    let chain = client
        .create_certificate(csr, Duration::from_secs(600), Some(TOKEN))
        .await
        .unwrap();
    let ders = chain_der(&chain).unwrap();
    assert_eq!(
        verify_svid(&ders, &[run.ca.root().clone()], TD, UnixTime::now()).unwrap(),
        me
    );
    assert_eq!(lifetime_secs(&ders[0]), 600 + 60);

    // Renewal: the current certificate as client identity, no token.
    let mut renewing = CaClient::connect(&addr, &root, "localhost", Some((chain.concat(), key)))
        .await
        .unwrap();
    let (csr, _) = generate_csr(&me).unwrap();
    let renewed = renewing
        .create_certificate(csr, Duration::ZERO, None)
        .await
        .unwrap();
    assert_ne!(renewed[0], chain[0]);
    // And without any credential the same call is refused.
    let (csr, _) = generate_csr(&me).unwrap();
    let err = client
        .create_certificate(csr, Duration::ZERO, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, spar_ca::client::ClientError::Refused(s) if s.code() == Code::Unauthenticated),
        "{err}"
    );
}
