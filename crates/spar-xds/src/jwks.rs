//! RequestAuthentication `jwksUri`s fetched by the control plane, as istiod fetches them:
//! proxies are pushed the keys inline and never fetch anything themselves.
//!
//! [`JwksResolver`] keeps one entry per URI the config names
//! ([`spar_translate::jwks_uris`]). Each is fetched (http, or https verified against the
//! system's trust store) at once when it first appears, then every `refresh` (istiod's
//! `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, 20 minutes). A failed fetch is retried after
//! `retry`, doubled on each further failure up to `refresh`. Failure covers the network,
//! a timeout (istiod: 5 s; a rule's `timeout` sets another for its URI), any status but 200
//! (after at most [`MAX_REDIRECTS`] redirects) and a body that is not a usable JWKS
//! ([`check_jwks`]).
//!
//! Fail closed, never borrow keys: a URI never fetched successfully has no keys, and
//! translation gives its rules a key set nobody can sign for
//! ([`spar_translate::REJECT_ALL_JWKS`]) — that rule only. A failed *refresh* keeps the
//! last keys fetched successfully in force (istiod keeps its cache too), so an issuer that
//! is down for a while does not lock every user out; the failure is logged and counted.
//! A URI no config names any more is forgotten with its keys.
//!
//! The resolver does no publishing itself: the control plane hands each new config's URIs
//! to [`JwksResolver::track`] and publishes the keys it returns with that config, and
//! [`JwksResolver::run`] calls back when a fetch changed the keys, so that the last config
//! is published again (the normal snapshot path: only proxies whose output changed are
//! pushed). The schedule itself is [`JwksCache`], plain state with the clock passed in.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::Metrics;

/// istiod's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(20 * 60);
/// The first retry after a failed fetch (doubled on each further failure, up to the
/// refresh interval).
pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// istiod's JWKS fetch timeout (and the default of a JWT rule's `timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest body read as a JWKS; real ones are a few KB.
pub const MAX_BODY: usize = 1024 * 1024;
/// Redirects followed (Go's HTTP client, which istiod uses, follows up to 10).
pub const MAX_REDIRECTS: usize = 10;

/// Why a `jwksUri` fetch failed. The rule keeps its last good keys, or rejects every
/// token if it never had any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("not an http:// or https:// URL with a host ({0}); fix the rule's jwksUri")]
    BadUri(String),
    #[error("cannot connect to {authority}: {reason}; check that the JWKS server is up and that the control plane can reach it")]
    Connect { authority: String, reason: String },
    #[error("TLS with {host} failed: {reason}; the server's certificate must chain to a root in the control plane's system trust store and name {host}")]
    Tls { host: String, reason: String },
    #[error("no trusted root certificates were found in the system trust store ({0}); install the CA certificates (e.g. the ca-certificates package) or use an http:// jwksUri")]
    NoRoots(String),
    #[error("HTTP exchange failed: {0}; check that the server speaks HTTP/1.1 at this URL")]
    Http(String),
    #[error(
        "the server answered {0}; check the jwksUri path and that the issuer serves its keys there"
    )]
    Status(u16),
    #[error("{0} redirects or more; point jwksUri at the final URL")]
    Redirects(usize),
    #[error("no complete answer within {0:?}; the server is slow or unreachable (raise the rule's `timeout` or --jwks-timeout if it is only slow)")]
    Timeout(Duration),
    #[error("the body is larger than {0} bytes; a JWKS is a few KB, check the jwksUri")]
    TooLarge(usize),
    #[error("the body is not a usable JWKS ({0}); the URL must serve {{\"keys\": [...]}} with at least one key")]
    NotJwks(String),
}

/// Whether `text` is a key set Envoy loads: a JSON object whose `keys` is a non-empty list
/// of objects that each name their key type (`kty`).
pub fn check_jwks(text: &str) -> Result<(), JwksError> {
    let not = |why: &str| Err(JwksError::NotJwks(why.to_string()));
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return not("not JSON");
    };
    let Some(keys) = v.get("keys").and_then(|k| k.as_array()) else {
        return not("no \"keys\" list");
    };
    if keys.is_empty() {
        return not("\"keys\" is empty");
    }
    if !keys
        .iter()
        .all(|k| k.get("kty").is_some_and(|t| t.is_string()))
    {
        return not("a key has no \"kty\"");
    }
    Ok(())
}

/// The resolver's timing: [`DEFAULT_REFRESH`], [`DEFAULT_RETRY`], [`DEFAULT_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksOptions {
    /// Time between fetches of a URI whose last fetch succeeded.
    pub refresh: Duration,
    /// Time before the first retry of a failed fetch; doubled on each further failure,
    /// never more than `refresh`.
    pub retry: Duration,
    /// How long one fetch (connect, TLS, request, body, redirects) may take, unless the
    /// URI's rules set a `timeout` (the longest of them applies).
    pub timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            refresh: DEFAULT_REFRESH,
            retry: DEFAULT_RETRY,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One URI's state.
#[derive(Debug, Clone)]
struct Entry {
    /// The last key set fetched successfully.
    keys: Option<String>,
    /// The longest `timeout` its rules ask for.
    timeout: Option<Duration>,
    /// When it is to be fetched next.
    due: Instant,
    /// Consecutive failed fetches.
    failures: u32,
    /// A fetch started and not recorded yet.
    in_flight: bool,
}

/// Which URIs to fetch when, and the keys they gave: no I/O, the clock is an argument.
#[derive(Debug, Clone)]
pub struct JwksCache {
    entries: BTreeMap<String, Entry>,
    refresh: Duration,
    retry: Duration,
}

/// What [`JwksCache::record`] made of a fetch's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The key set differs from what was in force: publish again.
    Changed,
    /// Nothing changed for proxies (the same keys again, a failure that keeps the last
    /// good ones or leaves the URI unresolved, or a URI no longer tracked).
    Unchanged,
}

impl JwksCache {
    pub fn new(refresh: Duration, retry: Duration) -> JwksCache {
        JwksCache {
            entries: BTreeMap::new(),
            // A zero interval would fetch in a loop.
            refresh: refresh.max(Duration::from_millis(10)),
            retry: retry.max(Duration::from_millis(10)),
        }
    }

    /// Makes `uris` (with their rules' timeouts) the set kept: new ones are due now,
    /// dropped ones are forgotten with their keys. Returns whether any is new.
    pub fn track(&mut self, uris: &BTreeMap<String, Option<Duration>>, now: Instant) -> bool {
        self.entries.retain(|u, _| uris.contains_key(u));
        let mut added = false;
        for (uri, timeout) in uris {
            let e = self.entries.entry(uri.clone()).or_insert_with(|| {
                added = true;
                Entry {
                    keys: None,
                    timeout: None,
                    due: now,
                    failures: 0,
                    in_flight: false,
                }
            });
            e.timeout = *timeout;
        }
        added
    }

    /// The URIs due at `now` and not being fetched, with their timeouts; each is marked
    /// in flight until its result is [`JwksCache::record`]ed.
    pub fn take_due(&mut self, now: Instant) -> Vec<(String, Option<Duration>)> {
        self.entries
            .iter_mut()
            .filter(|(_, e)| !e.in_flight && e.due <= now)
            .map(|(u, e)| {
                e.in_flight = true;
                (u.clone(), e.timeout)
            })
            .collect()
    }

    /// When the next URI not in flight is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.in_flight)
            .map(|e| e.due)
            .min()
    }

    /// Records a fetch of `uri` that ended at `now` and schedules the next one.
    pub fn record(
        &mut self,
        uri: &str,
        result: Result<String, JwksError>,
        now: Instant,
    ) -> Recorded {
        let Some(e) = self.entries.get_mut(uri) else {
            return Recorded::Unchanged;
        };
        e.in_flight = false;
        match result {
            Ok(keys) => {
                e.failures = 0;
                e.due = now + self.refresh;
                if e.keys.as_deref() == Some(keys.as_str()) {
                    Recorded::Unchanged
                } else {
                    e.keys = Some(keys);
                    Recorded::Changed
                }
            }
            Err(_) => {
                e.failures = e.failures.saturating_add(1);
                e.due = now + retry_after(self.retry, self.refresh, e.failures);
                Recorded::Unchanged
            }
        }
    }

    /// The wait before the next try after `failures` consecutive failures.
    pub fn retry_after(&self, failures: u32) -> Duration {
        retry_after(self.retry, self.refresh, failures)
    }

    /// The keys in force, by URI (URIs never fetched successfully are absent).
    pub fn resolved(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .filter_map(|(u, e)| Some((u.clone(), e.keys.clone()?)))
            .collect()
    }

    /// URIs kept that have no keys.
    pub fn unresolved(&self) -> usize {
        self.entries.values().filter(|e| e.keys.is_none()).count()
    }

    /// Consecutive failures of `uri`'s fetches, and whether it has keys.
    pub fn state(&self, uri: &str) -> Option<(u32, bool)> {
        self.entries
            .get(uri)
            .map(|e| (e.failures, e.keys.is_some()))
    }
}

/// `retry`, doubled for each failure after the first, at most `refresh`.
fn retry_after(retry: Duration, refresh: Duration, failures: u32) -> Duration {
    let doubling = failures.saturating_sub(1).min(30);
    retry.saturating_mul(1u32 << doubling).min(refresh)
}

/// Gets JWKS documents over HTTP/1.1, https verified against the system trust store.
pub struct HttpFetcher {
    tls: Result<Arc<rustls::ClientConfig>, JwksError>,
}

impl HttpFetcher {
    /// A fetcher trusting the system's root certificates (read once, here).
    pub fn system() -> HttpFetcher {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        let tls = if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_string(), ToString::to_string);
            Err(JwksError::NoRoots(why))
        } else {
            HttpFetcher::client_config(roots)
        };
        HttpFetcher { tls }
    }

    /// A fetcher trusting only `roots` (tests, private issuers).
    pub fn with_roots(roots: rustls::RootCertStore) -> HttpFetcher {
        HttpFetcher {
            tls: HttpFetcher::client_config(roots),
        }
    }

    fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, JwksError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| JwksError::NoRoots(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Fetches `uri` (following redirects) and checks that it is a JWKS; all of it within
    /// `timeout`.
    pub async fn fetch(&self, uri: &str, timeout: Duration) -> Result<String, JwksError> {
        match tokio::time::timeout(timeout, self.fetch_following(uri)).await {
            Ok(r) => r,
            Err(_) => Err(JwksError::Timeout(timeout)),
        }
    }

    async fn fetch_following(&self, uri: &str) -> Result<String, JwksError> {
        let mut target: http::Uri = uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| JwksError::BadUri(e.to_string()))?;
        for _ in 0..=MAX_REDIRECTS {
            match self.get_once(&target).await? {
                Answer::Body(text) => {
                    check_jwks(&text)?;
                    return Ok(text);
                }
                Answer::Redirect(location) => target = redirect(&target, &location)?,
            }
        }
        Err(JwksError::Redirects(MAX_REDIRECTS))
    }

    async fn get_once(&self, uri: &http::Uri) -> Result<Answer, JwksError> {
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(JwksError::BadUri(format!("scheme of {uri}"))),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| JwksError::BadUri(format!("no host in {uri}")))?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // `[::1]` in a URL is `::1` to connect to and to name in TLS.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let authority = uri
            .authority()
            .map_or_else(|| host.to_string(), ToString::to_string);
        let tcp = TcpStream::connect((bare, port))
            .await
            .map_err(|e| JwksError::Connect {
                authority: authority.clone(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return exchange(tcp, uri, &authority).await;
        }
        let config = self.tls.clone()?;
        let name = rustls_pki_types::ServerName::try_from(bare.to_string())
            .map_err(|e| JwksError::BadUri(format!("host {host}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| JwksError::Tls {
                host: bare.to_string(),
                reason: e.to_string(),
            })?;
        exchange(stream, uri, &authority).await
    }
}

enum Answer {
    Body(String),
    Redirect(String),
}

/// One GET on a fresh connection.
async fn exchange<S>(stream: S, uri: &http::Uri, authority: &str) -> Result<Answer, JwksError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_err = |e: hyper::Error| JwksError::Http(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "spar-control-plane")
        .body(Empty::<Bytes>::new())
        .map_err(|e| JwksError::BadUri(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(http_err);
    let out = match resp {
        Err(e) => Err(e),
        Ok(resp) => answer(resp).await,
    };
    driver.abort();
    out
}

async fn answer(resp: http::Response<hyper::body::Incoming>) -> Result<Answer, JwksError> {
    let status = resp.status();
    if status.is_redirection() {
        if let Some(loc) = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
        {
            return Ok(Answer::Redirect(loc.to_string()));
        }
    }
    if status != http::StatusCode::OK {
        return Err(JwksError::Status(status.as_u16()));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                JwksError::TooLarge(MAX_BODY)
            } else {
                JwksError::Http(e.to_string())
            }
        })?
        .to_bytes();
    String::from_utf8(body.to_vec())
        .map(Answer::Body)
        .map_err(|_| JwksError::NotJwks("not UTF-8".to_string()))
}

/// The target of a redirect from `from` to `location` (absolute, or a path on the same
/// server).
fn redirect(from: &http::Uri, location: &str) -> Result<http::Uri, JwksError> {
    let bad = |e: String| JwksError::BadUri(format!("redirect to {location:?}: {e}"));
    let loc: http::Uri = location
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    if loc.scheme().is_some() {
        return Ok(loc);
    }
    let mut parts = from.clone().into_parts();
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        // Relative to the current path's directory.
        let base = from.path();
        let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{location}")
    };
    parts.path_and_query = Some(
        path.parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?,
    );
    http::Uri::from_parts(parts).map_err(|e| bad(e.to_string()))
}

type OnChange = Arc<dyn Fn() + Send + Sync>;

/// The fetch loop over a [`JwksCache`]: see the module docs.
pub struct JwksResolver {
    cache: Mutex<JwksCache>,
    wake: tokio::sync::Notify,
    fetcher: HttpFetcher,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl JwksResolver {
    pub fn new(opts: JwksOptions, fetcher: HttpFetcher, metrics: Arc<Metrics>) -> JwksResolver {
        JwksResolver {
            cache: Mutex::new(JwksCache::new(opts.refresh, opts.retry)),
            wake: tokio::sync::Notify::new(),
            fetcher,
            timeout: opts.timeout,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JwksCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new config names `uris` ([`spar_translate::jwks_uris`]): new ones are fetched at
    /// once (in [`JwksResolver::run`]), dropped ones forgotten. Returns the keys to publish
    /// the config with: what is cached now, so publishing never waits for a fetch.
    pub fn track(
        &self,
        uris: &BTreeMap<String, Option<Duration>>,
    ) -> Arc<BTreeMap<String, String>> {
        let mut cache = self.lock();
        if cache.track(uris, Instant::now()) {
            self.wake.notify_one();
        }
        self.metrics
            .jwks_unresolved
            .set(i64::try_from(cache.unresolved()).unwrap_or(i64::MAX));
        Arc::new(cache.resolved())
    }

    /// The keys in force, by URI.
    pub fn resolved(&self) -> Arc<BTreeMap<String, String>> {
        Arc::new(self.lock().resolved())
    }

    /// Fetches what is due, forever; `on_change` runs (on a runtime thread) after a fetch
    /// changed the keys in force, to publish the last config again with
    /// [`JwksResolver::resolved`].
    pub async fn run(self: Arc<Self>, on_change: impl Fn() + Send + Sync + 'static) {
        let on_change: OnChange = Arc::new(on_change);
        loop {
            let (due, next) = {
                let mut cache = self.lock();
                let due = cache.take_due(Instant::now());
                (due, cache.next_due())
            };
            for (uri, timeout) in due {
                let this = self.clone();
                let on_change = on_change.clone();
                tokio::spawn(async move { this.fetch_one(uri, timeout, &on_change).await });
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        () = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    async fn fetch_one(&self, uri: String, timeout: Option<Duration>, on_change: &OnChange) {
        let timeout = timeout.unwrap_or(self.timeout);
        let result = self.fetcher.fetch(&uri, timeout).await;
        match &result {
            Ok(_) => self.metrics.jwks_fetch_ok.inc(),
            Err(_) => self.metrics.jwks_fetch_failed.inc(),
        };
        let err = result.as_ref().err().cloned();
        let (recorded, state, retry) = {
            let mut cache = self.lock();
            let recorded = cache.record(&uri, result, Instant::now());
            self.metrics
                .jwks_unresolved
                .set(i64::try_from(cache.unresolved()).unwrap_or(i64::MAX));
            let state = cache.state(&uri);
            let retry = state.map(|(f, _)| cache.retry_after(f));
            (recorded, state, retry)
        };
        // The loop's sleep may now end at another time.
        self.wake.notify_one();
        if let (Some(err), Some((failures, has_keys))) = (err, state) {
            let retry = retry.unwrap_or_default();
            if has_keys {
                tracing::warn!(
                    uri,
                    failures,
                    retry_in = ?retry,
                    "jwksUri fetch failed: {err}; the last keys fetched stay in force"
                );
            } else {
                tracing::warn!(
                    uri,
                    failures,
                    retry_in = ?retry,
                    "jwksUri fetch failed: {err}; its rules reject every token until a fetch succeeds"
                );
            }
        }
        if recorded == Recorded::Changed {
            tracing::info!(uri, "jwksUri fetched: new keys, publishing them");
            on_change();
        }
    }
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
