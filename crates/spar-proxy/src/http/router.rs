//! The router filter: picks the cluster (single, weighted, or named by a header), applies
//! rewrites and header edits, then sends the request upstream through the cluster's
//! balancer with retries (only on the configured conditions), per-try and route
//! timeouts, circuit breaking and outlier reporting. Failures become Envoy's local
//! replies and flags: 503 UH / UF / UC / UO / NC, 504 UT, URX when retries ran out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as _;

use super::request_body::RequestBody;

use super::body::{local_reply, Body, Flag, Flags};
use super::upstream::UpstreamError;
use super::{filters, Conn};
use crate::config::cluster::Cluster;
use crate::config::route::{Forward, HeaderOps, RetryPolicy, Route, Target};
use crate::lb::{ClusterLb, Host, Outcome, PickCtx};
use crate::proxy::Shared;

/// Request bodies up to this size are buffered so that a retry can resend them; larger
/// (or unknown-length) bodies stream and are not retried.
const RETRY_BUFFER: u64 = 64 * 1024;

/// How one attempt ended.
enum Attempt {
    Response(Response<Body>),
    ConnectFailure,
    Reset,
    Timeout,
}

fn weighted_pick(
    targets: &[crate::config::route::WeightedTarget],
) -> Option<&crate::config::route::WeightedTarget> {
    let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if total == 0 {
        return targets.first();
    }
    let mut r = fastrand::u64(0..total);
    for t in targets {
        if r < u64::from(t.weight) {
            return Some(t);
        }
        r -= u64::from(t.weight);
    }
    targets.last()
}

pub async fn forward(
    conn: &Conn,
    snap: &crate::config::Snapshot,
    route: &Route,
    fwd: Arc<Forward>,
    mut req: Request<RequestBody>,
    path: &str,
) -> Response<Body> {
    let (lb, extra_ops): (Option<&Arc<ClusterLb>>, Option<&HeaderOps>) = match &fwd.target {
        Target::Cluster(c) => (snap.balancers.get(c.as_str()), None),
        Target::Weighted(ts) => match weighted_pick(ts) {
            Some(t) => (snap.balancers.get(t.cluster.as_str()), Some(&t.headers)),
            None => return local_reply(Flag::NC),
        },
        Target::Header(h) => match req.headers().get(h).and_then(|v| v.to_str().ok()) {
            Some(c) => (snap.balancers.get(c), None),
            None => return local_reply(Flag::NC),
        },
    };
    let Some(lb) = lb.cloned() else {
        return local_reply(Flag::NC);
    };
    let upgrade =
        super::upgrade_type(req.headers()).map(|kind| (kind, hyper::upgrade::on(&mut req)));
    let (mut parts, body) = req.into_parts();
    // Rewrites. Like Envoy's router, tell the upstream what the path and host were before
    // (`x-envoy-original-path`, `x-envoy-original-host`).
    let new_path: std::borrow::Cow<'_, str> = if let Some(pr) = &fwd.prefix_rewrite {
        filters::prefix_rewrite(path, &route.matcher.path, pr).into()
    } else if let Some((re, sub)) = &fwd.regex_rewrite {
        filters::regex_rewrite(path, re, sub).into()
    } else {
        path.into()
    };
    if fwd.prefix_rewrite.is_some() || fwd.regex_rewrite.is_some() {
        if let Ok(v) = HeaderValue::from_str(path) {
            parts.headers.insert("x-envoy-original-path", v);
        }
    }
    if let Some(host) = &fwd.host_rewrite {
        if let Ok(v) = HeaderValue::from_str(host) {
            if let Some(before) = parts.headers.insert(http::header::HOST, v) {
                parts.headers.insert("x-envoy-original-host", before);
            }
        }
    }
    let hash = filters::request_hash(&fwd.hash_policy, &parts.headers, path, conn.peer);
    filters::strip_hop_by_hop(&mut parts.headers);
    if let Some(ops) = extra_ops {
        filters::apply_ops(&mut parts.headers, &ops.request_add, &ops.request_remove);
    }
    filters::apply_ops(
        &mut parts.headers,
        &route.headers.request_add,
        &route.headers.request_remove,
    );

    if let Some((kind, downstream)) = upgrade {
        let up = Box::pin(super::upgrade::proxy(
            conn, &lb, &parts, &new_path, &kind, downstream,
        ));
        return match fwd.timeout {
            Some(t) => tokio::time::timeout(t, up)
                .await
                .unwrap_or_else(|_| local_reply(Flag::UT)),
            None => up.await,
        };
    }
    // Bodies small enough are kept for retries.
    let retry = fwd.retry.as_ref().filter(|r| r.num_retries > 0);
    let size = body.size_hint();
    let (buffered, stream): (Option<Bytes>, Option<RequestBody>) = if body.is_end_stream() {
        (Some(Bytes::new()), None)
    } else if retry.is_some() && size.upper().is_some_and(|u| u <= RETRY_BUFFER) {
        match Limited::new(body, RETRY_BUFFER as usize).collect().await {
            Ok(c) => (Some(c.to_bytes()), None),
            Err(_) => return local_reply(Flag::DC),
        }
    } else {
        (None, Some(body))
    };

    if let Some(body) = &buffered {
        for m in fwd.mirrors.iter().filter(|m| m.fraction.sample()) {
            if let Some(mlb) = snap.balancers.get(&m.cluster) {
                mirror(conn, mlb.clone(), &parts, &new_path, body.clone());
            }
        }
    }
    let attempt_all = attempts(
        conn, &lb, &mut parts, &new_path, buffered, stream, retry, hash,
    );
    let mut resp = match fwd.timeout {
        Some(t) => match tokio::time::timeout(t, attempt_all).await {
            Ok(r) => r,
            Err(_) => local_reply(Flag::UT),
        },
        None => attempt_all.await,
    };
    if let Some(ops) = extra_ops {
        filters::apply_ops(resp.headers_mut(), &ops.response_add, &ops.response_remove);
    }
    resp
}

/// Sends a copy of the request to a mirror cluster and forgets it. As Envoy does, the
/// copy's host gets `-shadow` appended; only requests whose body was buffered (small,
/// known length) are mirrored.
fn mirror(conn: &Conn, lb: Arc<ClusterLb>, parts: &http::request::Parts, path: &str, body: Bytes) {
    let ctx = PickCtx {
        original_dst: Some(conn.dst),
        ..Default::default()
    };
    let Some(host) = lb.pick(&ctx) else {
        return;
    };
    let mut parts = parts.clone();
    let shadow = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            let (name, port) = filters::split_host_port(h);
            match port {
                Some(p) => format!("{name}-shadow:{p}"),
                None => format!("{name}-shadow"),
            }
        });
    if let Some(v) = shadow.and_then(|s| HeaderValue::from_str(&s).ok()) {
        parts.headers.insert(http::header::HOST, v);
    }
    let tls = match &host.tls {
        None => None,
        Some(t) => match tls_target(&conn.shared, t, &host.authority) {
            Ok(t) => Some(t),
            Err(_) => return,
        },
    };
    let shared = conn.shared.clone();
    let path = path.to_string();
    tokio::spawn(async move {
        let body = super::body::full(body);
        let (method, headers) = (parts.method, parts.headers);
        let sent = send_one(
            &shared,
            &lb.cluster,
            &host,
            tls,
            &method,
            headers,
            None,
            &path,
            body,
        )
        .await;
        if let Ok(resp) = sent {
            // Read the answer so the connection can be reused.
            let _ = resp.into_body().collect().await;
        }
    });
}

/// One request to `host` of `cluster`: HTTP/2 or HTTP/1.1 as the cluster says, inside `tls`
/// when the host's cluster (or its transport socket match) originates TLS. `headers` are
/// moved into the upstream request (the router copies them only for a retry). `target` is
/// the downstream request's own target: an HTTP/1.1 upstream request reuses it when it is
/// the origin-form `path` (nothing rewritten or normalized) instead of parsing `path` again.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_one(
    shared: &Shared,
    cluster: &Cluster,
    host: &Host,
    tls: Option<super::upstream::TlsTarget>,
    method: &Method,
    headers: HeaderMap,
    target: Option<&Uri>,
    path: &str,
    body: Body,
) -> Result<Response<Body>, UpstreamError> {
    if cluster.http2 {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let up = upstream_request(method, headers, scheme, host, path, body)
            .ok_or_else(|| UpstreamError::BadPath(path.to_string()))?;
        shared
            .upstream
            .send_h2(&host.authority, cluster.connect_timeout, tls.as_ref(), up)
            .await
    } else {
        let up = h1_request(method, headers, target, path, body)?;
        shared
            .upstream
            .send_h1(&host.authority, cluster.connect_timeout, tls.as_ref(), up)
            .await
    }
}

/// Envoy's backoff: a random wait in `[0, min(base * (2^n - 1), max)]`.
fn backoff(policy: &RetryPolicy, n: u32) -> Duration {
    let factor = (1u64 << n.min(20)) - 1;
    let ceiling = policy
        .base_interval
        .saturating_mul(factor as u32)
        .min(policy.max_interval);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(fastrand::u64(0..=ms.max(1)))
}

fn retriable(policy: &RetryPolicy, a: &Attempt) -> bool {
    let on = &policy.on;
    match a {
        Attempt::ConnectFailure => on.connect_failure || on.five_xx || on.gateway_error || on.reset,
        Attempt::Reset => on.reset || on.five_xx,
        Attempt::Timeout => on.five_xx || on.gateway_error,
        Attempt::Response(r) => {
            let s = r.status().as_u16();
            (on.five_xx && s >= 500)
                || (on.gateway_error && matches!(s, 502..=504))
                || (on.retriable_4xx && s == 409)
                || (on.retriable_status_codes && policy.status_codes.contains(&s))
                || (!on.grpc.is_empty()
                    && r.headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u32>().ok())
                        .is_some_and(|g| on.grpc.contains(&g)))
        }
    }
}

fn upstream_request(
    method: &Method,
    headers: HeaderMap,
    scheme: &str,
    host: &Host,
    path: &str,
    body: Body,
) -> Option<Request<Body>> {
    let uri: Uri = format!("{scheme}://{}{}", host.authority, path)
        .parse()
        .ok()?;
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some(req)
}

/// The TLS to originate to a host whose cluster says so (its secrets from the snapshot in
/// force).
pub(crate) fn tls_target(
    shared: &crate::proxy::Shared,
    tls: &Arc<crate::config::tls::UpstreamTls>,
    authority: &str,
) -> Result<super::upstream::TlsTarget, UpstreamError> {
    let failed = |why: String| UpstreamError::Connect {
        authority: authority.to_string(),
        why,
    };
    let snap = shared.store.load();
    let config = shared
        .tls_clients
        .get(tls, &snap)
        .map_err(|e| failed(e.to_string()))?;
    let server_name = crate::tls::client::server_name(tls, authority)
        .ok_or_else(|| failed(format!("no TLS server name for {authority}")))?;
    Ok(super::upstream::TlsTarget {
        config,
        server_name,
        pool_suffix: format!("{}|{:x}", tls.sni, Arc::as_ptr(tls) as usize),
    })
}

/// An HTTP/1.1 upstream request: origin-form target, the router's headers.
fn h1_request(
    method: &Method,
    headers: HeaderMap,
    target: Option<&Uri>,
    path: &str,
    body: Body,
) -> Result<Request<Body>, UpstreamError> {
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = match target {
        Some(t)
            if t.scheme().is_none() && t.path_and_query().is_some_and(|p| p.as_str() == path) =>
        {
            t.clone()
        }
        _ => super::upstream::origin_form(path)?,
    };
    *req.headers_mut() = headers;
    Ok(req)
}

#[allow(clippy::too_many_arguments)]
async fn attempts(
    conn: &Conn,
    lb: &Arc<ClusterLb>,
    parts: &mut http::request::Parts,
    path: &str,
    buffered: Option<Bytes>,
    mut stream: Option<RequestBody>,
    retry: Option<&RetryPolicy>,
    hash: Option<u64>,
) -> Response<Body> {
    let cluster = &lb.cluster;
    let limits = cluster.limits;
    if lb.active_requests.load(Ordering::Relaxed) >= limits.max_requests {
        return local_reply(Flag::UO);
    }
    lb.active_requests.fetch_add(1, Ordering::Relaxed);
    let _guard = Decrement(&lb.active_requests);
    let max_attempts = 1 + retry.map_or(0, |r| if buffered.is_some() { r.num_retries } else { 0 });
    let mut n = 0u32;
    loop {
        let ctx = PickCtx {
            hash,
            original_dst: Some(conn.dst),
            attempt: n,
        };
        let Some(host) = lb.pick(&ctx) else {
            return local_reply(Flag::UH);
        };
        let body = match (&buffered, stream.take()) {
            (Some(b), _) => super::body::full(b.clone()),
            (None, Some(s)) => s.map_err(|e| Box::new(e) as _).boxed_unsync(),
            (None, None) => super::body::empty(),
        };
        if host.authority == conn.local_text {
            // Forwarding to the proxy's own listener would loop.
            return local_reply(Flag::UF);
        }
        // The last attempt takes the headers; earlier ones send a copy.
        let headers = if n + 1 >= max_attempts {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };
        host.active.fetch_add(1, Ordering::Relaxed);
        let send = async {
            let tls = match &host.tls {
                None => None,
                Some(t) => Some(tls_target(&conn.shared, t, &host.authority)?),
            };
            send_one(
                &conn.shared,
                cluster,
                &host,
                tls,
                &parts.method,
                headers,
                Some(&parts.uri),
                path,
                body,
            )
            .await
        };
        let per_try = retry.and_then(|r| r.per_try_timeout);
        let result = match per_try {
            Some(t) => tokio::time::timeout(t, send).await.ok(),
            None => Some(send.await),
        };
        host.active.fetch_sub(1, Ordering::Relaxed);
        let outcome = match result {
            None => Attempt::Timeout,
            Some(Ok(r)) => Attempt::Response(r),
            Some(Err(UpstreamError::Connect { .. } | UpstreamError::BadPath(_))) => {
                Attempt::ConnectFailure
            }
            Some(Err(e)) => {
                tracing::debug!(cluster = %cluster.name, "{e}");
                Attempt::Reset
            }
        };
        lb.report(
            &host,
            match &outcome {
                Attempt::Response(r) => Outcome::Status(r.status().as_u16()),
                _ => Outcome::LocalFailure,
            },
        );
        n += 1;
        let can_retry = retry.is_some_and(|p| retriable(p, &outcome));
        let budget = lb.active_retries.load(Ordering::Relaxed) < limits.max_retries;
        if can_retry && n < max_attempts && budget {
            if let Some(p) = retry {
                lb.active_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(p, n)).await;
                lb.active_retries.fetch_sub(1, Ordering::Relaxed);
            }
            conn.shared
                .stats
                .upstream_rq_retry
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let exhausted = can_retry;
        let mut resp = match outcome {
            Attempt::Response(r) => r,
            Attempt::ConnectFailure => local_reply(Flag::UF),
            Attempt::Reset => local_reply(Flag::UC),
            Attempt::Timeout => local_reply(Flag::UT),
        };
        filters::strip_hop_by_hop(resp.headers_mut());
        if exhausted {
            let mut f = resp.extensions_mut().remove::<Flags>().unwrap_or_default();
            f.0.push(Flag::URX);
            resp.extensions_mut().insert(f);
        }
        return resp;
    }
}

struct Decrement<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(downstream: Option<&Uri>, path: &str) -> Result<Uri, UpstreamError> {
        h1_request(
            &Method::GET,
            HeaderMap::new(),
            downstream,
            path,
            super::super::body::empty(),
        )
        .map(|r| r.uri().clone())
    }

    #[test]
    fn an_upstream_http1_request_targets_the_path_it_is_given() {
        let same: Uri = "/a/b?q=1".parse().unwrap();
        assert_eq!(target_of(Some(&same), "/a/b?q=1").unwrap(), "/a/b?q=1");
        // Rewritten or normalized: the path given, not the downstream target.
        assert_eq!(target_of(Some(&same), "/v2/b?q=1").unwrap(), "/v2/b?q=1");
        // An absolute-form downstream target is never sent upstream as it is.
        let absolute: Uri = "http://h/a/b?q=1".parse().unwrap();
        assert_eq!(target_of(Some(&absolute), "/a/b?q=1").unwrap(), "/a/b?q=1");
        assert!(target_of(None, "not a path\n").is_err());
    }
}
