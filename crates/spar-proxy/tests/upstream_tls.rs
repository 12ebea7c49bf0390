//! TLS origination to upstreams as DestinationRules configure it, through a gateway: SIMPLE
//! (the server's chain checked against `caCertificates`, SAN matchers), MUTUAL (a client
//! certificate from files) and ISTIO_MUTUAL (the `default` and `ROOTCA` SDS secrets, the
//! server checked by its SPIFFE identity), against an HTTPS backend that reports the
//! client certificate it saw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use spar_proxy::config::Snapshot;
use spar_proxy::{Proxy, ProxyOptions, Store};
use support::*;

/// An HTTPS backend (client certificates optional, from `client_ca`) answering
/// `backend=tls peer=<the client certificate's first SAN, or none>`.
async fn https_backend(cert: &(String, String), client_ca: &str) -> SocketAddr {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.0.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| {
                        let (_, x) = x509_parser::parse_x509_certificate(c.as_ref()).unwrap();
                        let san = x.subject_alternative_name().unwrap().unwrap();
                        format!("{:?}", san.value.general_names.first().unwrap())
                    })
                    .unwrap_or_else(|| "none".into());
                let svc = service_fn(move |_req| {
                    let body = format!("backend=tls peer={peer}");
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn config(backend: SocketAddr, port: u16, tls: &str) -> String {
    let mut y = service("web", 8443, "https-web", &[("v1", backend)]);
    y.push_str(&format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: default}}
spec:
  host: web.default.svc.cluster.local
  trafficPolicy:
    tls: {tls}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - route: [{{destination: {{host: web.default.svc.cluster.local, port: {{number: 8443}}}}}}]
"#
    ));
    y
}

fn secret(
    name: &str,
    body: envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type,
) -> envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret {
    envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret {
        name: name.into(),
        r#type: Some(body),
    }
}

fn inline(s: &str) -> Option<envoy_types::pb::envoy::config::core::v3::DataSource> {
    Some(envoy_types::pb::envoy::config::core::v3::DataSource {
        specifier: Some(
            envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                s.into(),
            ),
        ),
        ..Default::default()
    })
}

async fn through(x: spar_translate::XdsResources, port: u16) -> (u16, String) {
    let store = Arc::new(Store::new(Snapshot::from_xds(&x).unwrap()));
    let _proxy = Proxy::start(store, ProxyOptions::default()).await.unwrap();
    let r = get(&client(false), port, "/x", &[]).await;
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_mutual_and_istio_mutual_origination() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = test_ca("server-ca");
    let client_ca = test_ca("client-ca");
    let server = test_leaf(
        &server_ca,
        &["web.example.com"],
        Some("spiffe://cluster.local/ns/default/sa/web"),
    );
    let backend = https_backend(&server, &client_ca.pem).await;
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let ca_file = file("server-ca.pem", &server_ca.pem);

    // SIMPLE with the right CA: one-way TLS.
    let port = free_port();
    let tls = format!("{{mode: SIMPLE, caCertificates: {ca_file}, sni: web.example.com}}");
    let (code, body) = through(gateway_resources(&config(backend, port, &tls)), port).await;
    assert_eq!((code, body.as_str()), (200, "backend=tls peer=none"));

    // SIMPLE trusting another CA: the handshake fails (503 UF).
    let other_file = file("other-ca.pem", &test_ca("other").pem);
    let port = free_port();
    let tls = format!("{{mode: SIMPLE, caCertificates: {other_file}}}");
    let (code, _) = through(gateway_resources(&config(backend, port, &tls)), port).await;
    assert_eq!(code, 503);

    // SIMPLE with a SAN the server does not have: refused too.
    let port = free_port();
    let tls = format!(
        "{{mode: SIMPLE, caCertificates: {ca_file}, subjectAltNames: [other.example.com]}}"
    );
    let (code, _) = through(gateway_resources(&config(backend, port, &tls)), port).await;
    assert_eq!(code, 503);

    // MUTUAL: a client certificate from files.
    let client = test_leaf(&client_ca, &["client.example.com"], None);
    let (cert_file, key_file) = (file("client.pem", &client.0), file("client.key", &client.1));
    let port = free_port();
    let tls = format!(
        "{{mode: MUTUAL, caCertificates: {ca_file}, clientCertificate: {cert_file}, privateKey: {key_file}}}"
    );
    let (code, body) = through(gateway_resources(&config(backend, port, &tls)), port).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("client.example.com"), "{body}");

    // ISTIO_MUTUAL: the proxy's own SVID and the mesh root over SDS; the server must carry
    // the SPIFFE identity the rule names.
    let svid = test_leaf(
        &client_ca,
        &[],
        Some("spiffe://cluster.local/ns/istio-system/sa/gateway"),
    );
    let port = free_port();
    let mut x = gateway_resources(&config(
        backend,
        port,
        "{mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/default/sa/web]}",
    ));
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        secret::Type, CertificateValidationContext, TlsCertificate,
    };
    x.secrets.push(secret(
        "default",
        Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&svid.0),
            private_key: inline(&svid.1),
            ..Default::default()
        }),
    ));
    x.secrets.push(secret(
        "ROOTCA",
        Type::ValidationContext(CertificateValidationContext {
            trusted_ca: inline(&server_ca.pem),
            ..Default::default()
        }),
    ));
    let (code, body) = through(x, port).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("spiffe://cluster.local/ns/istio-system/sa/gateway"),
        "{body}"
    );
}
