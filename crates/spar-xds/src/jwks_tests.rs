#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const KEYS_A: &str = r#"{"keys":[{"kty":"RSA","kid":"a","e":"AQAB","n":"AQAB"}]}"#;
const KEYS_B: &str = r#"{"keys":[{"kty":"EC","kid":"b","crv":"P-256","x":"AA","y":"AA"}]}"#;

fn uris(list: &[&str]) -> BTreeMap<String, Option<Duration>> {
    list.iter().map(|u| (u.to_string(), None)).collect()
}

#[test]
fn a_jwks_needs_a_non_empty_keys_list_of_typed_keys() {
    assert_eq!(check_jwks(KEYS_A), Ok(()));
    assert_eq!(check_jwks(KEYS_B), Ok(()));
    for bad in [
        "<html>nope</html>",
        "",
        "[]",
        r#"{"keys":[]}"#,
        r#"{"keys":{}}"#,
        r#"{"kty":"RSA","e":"AQAB","n":"AQAB"}"#,
        r#"{"keys":[{"kid":"x"}]}"#,
    ] {
        assert!(
            matches!(check_jwks(bad), Err(JwksError::NotJwks(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn new_uris_are_due_at_once_and_in_flight_ones_are_not_taken_twice() {
    let t0 = Instant::now();
    let mut c = JwksCache::new(Duration::from_secs(1200), Duration::from_secs(1));
    assert!(c.track(&uris(&["http://a/jwks", "http://b/jwks"]), t0));
    assert!(!c.track(&uris(&["http://a/jwks", "http://b/jwks"]), t0));
    assert_eq!(c.unresolved(), 2);
    let due = c.take_due(t0);
    assert_eq!(due.len(), 2);
    assert!(c.take_due(t0).is_empty(), "in flight");
    assert_eq!(c.next_due(), None);
    assert_eq!(
        c.record("http://a/jwks", Ok(KEYS_A.into()), t0),
        Recorded::Changed
    );
    assert_eq!(c.next_due(), Some(t0 + Duration::from_secs(1200)));
    assert_eq!(
        c.resolved().get("http://a/jwks").map(String::as_str),
        Some(KEYS_A)
    );
    // b never resolved: absent (its rules reject every token), a's keys not borrowed.
    assert!(!c.resolved().contains_key("http://b/jwks"));
    assert_eq!(c.unresolved(), 1);
}

#[test]
fn a_failed_refresh_keeps_the_last_good_keys_and_retries_with_backoff() {
    let t0 = Instant::now();
    let (refresh, retry) = (Duration::from_secs(60), Duration::from_secs(1));
    let mut c = JwksCache::new(refresh, retry);
    let u = "https://issuer/jwks";
    c.track(&uris(&[u]), t0);
    c.take_due(t0);
    assert_eq!(c.record(u, Ok(KEYS_A.into()), t0), Recorded::Changed);
    // The same keys again change nothing.
    let t1 = t0 + refresh;
    assert_eq!(c.take_due(t1).len(), 1);
    assert_eq!(c.record(u, Ok(KEYS_A.into()), t1), Recorded::Unchanged);
    // Failures keep the keys; retries come sooner than the refresh, doubling, capped.
    let mut now = t1 + refresh;
    let mut waits = Vec::new();
    for _ in 0..9 {
        assert_eq!(c.take_due(now).len(), 1, "due at {:?}", now - t0);
        let err = Err(JwksError::Status(503));
        assert_eq!(c.record(u, err, now), Recorded::Unchanged);
        assert_eq!(c.resolved()[u], KEYS_A);
        let next = c.next_due().unwrap();
        waits.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(c.state(u), Some((9, true)));
    // A success resets the backoff; new keys are a change.
    c.take_due(now);
    assert_eq!(c.record(u, Ok(KEYS_B.into()), now), Recorded::Changed);
    assert_eq!(c.next_due(), Some(now + refresh));
    assert_eq!(c.state(u), Some((0, true)));
}

#[test]
fn dropped_uris_are_forgotten_and_late_results_ignored() {
    let t0 = Instant::now();
    let mut c = JwksCache::new(Duration::from_secs(60), Duration::from_secs(1));
    c.track(&uris(&["http://a/jwks"]), t0);
    c.take_due(t0);
    c.track(&uris(&[]), t0);
    assert_eq!(
        c.record("http://a/jwks", Ok(KEYS_A.into()), t0),
        Recorded::Unchanged
    );
    assert!(c.resolved().is_empty());
    assert_eq!(c.next_due(), None);
    // Back again: new, due now, with no keys.
    assert!(c.track(&uris(&["http://a/jwks"]), t0));
    assert_eq!(c.unresolved(), 1);
}

/// A tiny HTTP/1.1 server: `path -> (status, extra headers, body)`; a path missing from
/// the map never gets an answer (a hung server).
type Routes = Arc<Mutex<HashMap<String, (u16, String, String)>>>;

async fn server() -> (String, Routes, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let routes: Routes = Arc::default();
    let hits = Arc::new(AtomicUsize::new(0));
    let (r, h) = (routes.clone(), hits.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (routes, hits) = (r.clone(), h.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&head).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                let answer = routes.lock().unwrap().get(&path).cloned();
                let Some((status, headers, body)) = answer else {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{headers}connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, routes, hits)
}

fn route(routes: &Routes, path: &str, status: u16, headers: &str, body: &str) {
    routes.lock().unwrap().insert(
        path.to_string(),
        (status, headers.to_string(), body.to_string()),
    );
}

#[tokio::test]
async fn fetches_over_http_and_every_kind_of_failure_is_an_error() {
    let (addr, routes, _) = server().await;
    route(&routes, "/jwks", 200, "", KEYS_A);
    route(&routes, "/html", 200, "", "<html>login</html>");
    route(&routes, "/gone", 404, "", "not found");
    route(&routes, "/moved", 302, "location: /jwks\r\n", "");
    route(&routes, "/dir/rel", 301, "location: jwks\r\n", "");
    route(&routes, "/dir/jwks", 200, "", KEYS_B);
    route(&routes, "/loop", 302, "location: /loop\r\n", "");
    route(&routes, "/big", 200, "", &" ".repeat(MAX_BODY + 1));
    let f = HttpFetcher::with_roots(rustls::RootCertStore::empty());
    let t = Duration::from_secs(5);
    let get = |p: &str| format!("http://{addr}{p}");
    assert_eq!(f.fetch(&get("/jwks"), t).await.unwrap(), KEYS_A);
    assert_eq!(f.fetch(&get("/moved"), t).await.unwrap(), KEYS_A);
    assert_eq!(f.fetch(&get("/dir/rel"), t).await.unwrap(), KEYS_B);
    assert!(matches!(
        f.fetch(&get("/html"), t).await,
        Err(JwksError::NotJwks(_))
    ));
    assert_eq!(f.fetch(&get("/gone"), t).await, Err(JwksError::Status(404)));
    assert_eq!(
        f.fetch(&get("/loop"), t).await,
        Err(JwksError::Redirects(MAX_REDIRECTS))
    );
    assert_eq!(
        f.fetch(&get("/big"), t).await,
        Err(JwksError::TooLarge(MAX_BODY))
    );
    let short = Duration::from_millis(200);
    assert_eq!(
        f.fetch(&get("/hangs"), short).await,
        Err(JwksError::Timeout(short))
    );
    // Nothing listens on port 1.
    let refused = f.fetch("http://127.0.0.1:1/jwks", t).await;
    assert!(
        matches!(refused, Err(JwksError::Connect { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        f.fetch("ftp://x/jwks", t).await,
        Err(JwksError::BadUri(_))
    ));
    // An error tells the operator what to do.
    let text = refused.unwrap_err().to_string();
    assert!(text.contains("check that the JWKS server is up"), "{text}");
}

/// An https server with a self-signed certificate for `localhost` serving `KEYS_A`;
/// returns its port and the certificate (to trust).
async fn tls_server() -> (u16, rustls_pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().clone();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{KEYS_A}",
                    KEYS_A.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, der)
}

#[tokio::test]
async fn https_is_verified_against_the_trusted_roots() {
    let (port, der) = tls_server().await;
    let uri = format!("https://localhost:{port}/jwks");
    let t = Duration::from_secs(5);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let trusted = HttpFetcher::with_roots(roots);
    assert_eq!(trusted.fetch(&uri, t).await.unwrap(), KEYS_A);
    // The system roots do not know this self-signed certificate.
    let system = HttpFetcher::system();
    let got = system.fetch(&uri, t).await;
    assert!(
        matches!(got, Err(JwksError::Tls { .. }) | Err(JwksError::NoRoots(_))),
        "{got:?}"
    );
    // A name the certificate does not carry is refused even with the root trusted.
    let got = trusted
        .fetch(&format!("https://127.0.0.1:{port}/jwks"), t)
        .await;
    assert!(matches!(got, Err(JwksError::Tls { .. })), "{got:?}");
}

#[tokio::test]
async fn the_resolver_fetches_new_uris_retries_and_reports_changes() {
    let (addr, routes, hits) = server().await;
    let metrics = Arc::new(Metrics::new());
    let opts = JwksOptions {
        refresh: Duration::from_millis(300),
        retry: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
    };
    let fetcher = HttpFetcher::with_roots(rustls::RootCertStore::empty());
    let r = Arc::new(JwksResolver::new(opts, fetcher, metrics.clone()));
    let changes = Arc::new(AtomicUsize::new(0));
    let c = changes.clone();
    tokio::spawn(r.clone().run(move || {
        c.fetch_add(1, Ordering::SeqCst);
    }));
    let uri = format!("http://{addr}/jwks");
    route(&routes, "/jwks", 503, "", "down");
    // Publishing never waits: nothing is cached yet.
    assert!(r.track(&uris(&[&uri])).is_empty());
    let until = |pred: Box<dyn Fn() -> bool + Send>| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pred() {
            assert!(Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let h = hits.clone();
    until(Box::new(move || h.load(Ordering::SeqCst) >= 3)).await;
    assert_eq!(changes.load(Ordering::SeqCst), 0);
    assert!(r.resolved().is_empty());
    assert!(metrics.jwks_fetch_failed.get() >= 3);
    assert_eq!(metrics.jwks_unresolved.get(), 1);
    // The server comes up: the retry fetches the keys and reports the change.
    route(&routes, "/jwks", 200, "", KEYS_A);
    let c = changes.clone();
    until(Box::new(move || c.load(Ordering::SeqCst) == 1)).await;
    assert_eq!(r.resolved()[&uri], KEYS_A);
    assert_eq!(metrics.jwks_unresolved.get(), 0);
    // Rotation: the next refresh brings the new keys.
    route(&routes, "/jwks", 200, "", KEYS_B);
    let c = changes.clone();
    until(Box::new(move || c.load(Ordering::SeqCst) == 2)).await;
    assert_eq!(r.resolved()[&uri], KEYS_B);
    // Down again: the last keys stay in force.
    route(&routes, "/jwks", 500, "", "oops");
    let before = metrics.jwks_fetch_failed.get();
    let m = metrics.clone();
    until(Box::new(move || m.jwks_fetch_failed.get() > before + 1)).await;
    assert_eq!(r.resolved()[&uri], KEYS_B);
    assert_eq!(changes.load(Ordering::SeqCst), 2);
    // No longer named by the config: forgotten, no more fetches.
    assert!(r.track(&uris(&[])).is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(hits.load(Ordering::SeqCst) <= n + 1);
}
