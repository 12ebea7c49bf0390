//! The proxy's own identity against a real CA (spar-ca's CSR API over TLS, in process): a
//! certificate for the proxy's SPIFFE id is installed as the `default` secret with the mesh
//! root as `ROOTCA`, and with a short lifetime it is renewed at about half of it (new key,
//! new serial) without anything else changing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use spar_ca::{Ca, CaService, SpiffeId, StaticTokens, TtlPolicy};
use spar_proxy::config::Store;
use spar_proxy::identity::{run, IdentityOptions};
use tokio::net::TcpListener;

const TD: &str = "cluster.local";
const TOKEN: &str = "token-for-the-gateway";

async fn start_ca(ttl: Duration) -> (String, Arc<Ca>) {
    let ca = Arc::new(Ca::generate(TD).unwrap());
    let mut tokens = StaticTokens::new();
    tokens.insert(TOKEN, SpiffeId::new(TD, "istio-system", "gateway").unwrap());
    let svc = CaService::new(
        ca.clone(),
        Box::new(tokens),
        TtlPolicy {
            default: ttl,
            max: Duration::from_secs(3600),
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = spar_ca::server::tls_config(&ca).unwrap();
    tokio::spawn(async move {
        spar_ca::server::serve(listener, tls, svc, std::future::pending())
            .await
            .unwrap();
    });
    (format!("https://localhost:{}", addr.port()), ca)
}

/// (serial, URI SAN) of the `default` secret's leaf, if installed.
fn held(store: &Store) -> Option<(String, String)> {
    let snap = store.load();
    let cert = snap.secret("default")?.cert.clone()?;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&cert.chain)
        .next()?
        .ok()?;
    let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = x.subject_alternative_name().ok()??;
    let uri = san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
        _ => None,
    })?;
    Some((x.raw_serial_as_string(), uri))
}

use rustls_pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_gets_its_svid_and_renews_it_at_half_life() {
    let (addr, ca) = start_ca(Duration::from_secs(6)).await;
    let store = Arc::new(Store::default());
    let task = tokio::spawn(run(
        store.clone(),
        IdentityOptions {
            ca_addr: addr,
            ca_root_pem: ca.root_pem(),
            ca_server_name: "localhost".into(),
            token: Some(TOKEN.into()),
            id: SpiffeId::new(TD, "istio-system", "gateway").unwrap(),
            ttl: Duration::ZERO,
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(h) = held(&store) {
            break h;
        }
        assert!(Instant::now() < deadline, "no certificate installed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first.1, "spiffe://cluster.local/ns/istio-system/sa/gateway");
    let root = store
        .load()
        .secret("ROOTCA")
        .unwrap()
        .validation
        .clone()
        .unwrap();
    assert_eq!(
        String::from_utf8(root.trusted_ca.clone()).unwrap().trim(),
        ca.root_pem().trim()
    );
    // A 6 s lifetime: renewed after about 3 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = held(&store).unwrap();
        if now.0 != first.0 {
            assert_eq!(now.1, first.1, "same identity after renewal");
            break;
        }
        assert!(Instant::now() < deadline, "not renewed at half life");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
}
