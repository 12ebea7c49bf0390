//! HTTP/1.1 upgrades (WebSocket and any type the manager's `upgrade_configs` allows): the
//! request goes upstream with its `upgrade` intact; on `101 Switching Protocols` both
//! connections are taken over from hyper and bytes are copied both ways until one side
//! closes. Any other answer is returned as a normal response. No retries.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::{empty, local_reply, Body, Flag};
use super::{filters, Conn};
use crate::lb::{ClusterLb, Outcome, PickCtx};

pub async fn proxy(
    conn: &Conn,
    lb: &Arc<ClusterLb>,
    parts: &http::request::Parts,
    path: &str,
    kind: &str,
    downstream: OnUpgrade,
) -> Response<Body> {
    let ctx = PickCtx {
        original_dst: Some(conn.dst),
        ..Default::default()
    };
    let Some(host) = lb.pick(&ctx) else {
        return local_reply(Flag::UH);
    };
    if host.authority == conn.local_text {
        return local_reply(Flag::UF);
    }
    let Ok(uri) = format!("http://{}{}", host.authority, path).parse::<Uri>() else {
        return local_reply(Flag::UF);
    };
    let mut req = Request::builder().method(parts.method.clone()).uri(uri);
    if let Some(h) = req.headers_mut() {
        *h = parts.headers.clone();
        h.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        if let Ok(v) = HeaderValue::from_str(kind) {
            h.insert(http::header::UPGRADE, v);
        }
    }
    let Ok(req) = req.body(empty()) else {
        return local_reply(Flag::UF);
    };
    // Upgrades run over HTTP/1.1 whatever the cluster prefers (as in Envoy, where they do
    // not work with HTTP/2 upstreams).
    let client = conn
        .shared
        .upstream
        .client(false, lb.cluster.connect_timeout);
    let mut resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            lb.report(&host, Outcome::LocalFailure);
            return local_reply(if e.is_connect() { Flag::UF } else { Flag::UC });
        }
    };
    lb.report(&host, Outcome::Success);
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        filters::strip_hop_by_hop(resp.headers_mut());
        return resp.map(|b| b.map_err(|e| Box::new(e) as _).boxed_unsync());
    }
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (d, u) = match (downstream.await, upstream.await) {
            (Ok(d), Ok(u)) => (d, u),
            (d, u) => {
                tracing::debug!(down = d.is_ok(), up = u.is_ok(), "upgrade did not complete");
                return;
            }
        };
        let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
        let _ = tokio::io::copy_bidirectional(&mut d, &mut u).await;
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, empty())
}
