//! The monitoring port (15014): `/metrics` (Prometheus text), `/debug/syncz` (proxy status
//! as JSON, read by `spar ctl proxy-status`) and `/debug/config_dump?proxyID=<id>[&type=clusters]`
//! (what that proxy was sent, optionally one type; read by `spar ctl proxy-config`; see
//! [`crate::dump`] for a resource's fields) and `/debug/configz` (config files whose latest
//! version is invalid, with their errors; their last good version stays in force).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::dump::{dump, type_filter, TYPES};
use crate::metrics::Metrics;
use crate::resources::short_name;
use crate::status::StatusRegistry;

/// What the monitoring endpoints read.
pub struct Monitoring {
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusRegistry>,
    pub config_errors: Arc<ConfigErrors>,
}

/// Config files whose latest version is invalid, each with its diagnostics (one line each),
/// as the config store last reported them.
#[derive(Default)]
pub struct ConfigErrors(arc_swap::ArcSwap<std::collections::BTreeMap<String, Vec<String>>>);

impl ConfigErrors {
    pub fn set(&self, bad_files: std::collections::BTreeMap<String, Vec<String>>) {
        self.0.store(Arc::new(bad_files));
    }

    pub fn get(&self) -> Arc<std::collections::BTreeMap<String, Vec<String>>> {
        self.0.load_full()
    }
}

/// Serves the monitoring endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<Monitoring>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, &req)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "monitoring connection");
            }
        });
    }
}

fn handle(state: &Monitoring, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" | "/stats/prometheus" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode(),
        ),
        "/debug/syncz" => json(&serde_json::to_value(state.status.all()).unwrap_or_default()),
        "/debug/configz" => json(&serde_json::json!({
            "bad_files": serde_json::to_value(&*state.config_errors.get()).unwrap_or_default()
        })),
        "/debug/config_dump" => {
            let Some(proxy) = query_param(req.uri().query().unwrap_or(""), "proxyID") else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "give the proxy: /debug/config_dump?proxyID=<node id> (see /debug/syncz)\n"
                        .to_string(),
                );
            };
            let query = req.uri().query().unwrap_or("");
            let only = match query_param(query, "type") {
                None => None,
                Some(t) => match type_filter(&t) {
                    Some(url) => Some(url),
                    None => {
                        let known: Vec<&str> = TYPES.iter().map(|(s, _)| *s).collect();
                        return reply(
                            StatusCode::BAD_REQUEST,
                            "text/plain",
                            format!("unknown type {t:?}; one of {}\n", known.join(", ")),
                        );
                    }
                },
            };
            let conns = state.status.sent_to(&proxy);
            if conns.is_empty() {
                return reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!("no connected proxy {proxy:?} (see /debug/syncz)\n"),
                );
            }
            let conns: Vec<serde_json::Value> = conns
                .into_iter()
                .map(|(id, types)| {
                    let types: serde_json::Map<String, serde_json::Value> = types
                        .into_iter()
                        .filter(|(t, _)| only.is_none_or(|o| short_name(o) == *t))
                        .map(|(t, res)| {
                            let list = res.iter().map(|(n, r)| dump(n, r)).collect();
                            (t.to_string(), serde_json::Value::Array(list))
                        })
                        .collect();
                    serde_json::json!({ "connection": id, "resources": types })
                })
                .collect();
            json(&serde_json::json!({ "proxy": proxy, "connections": conns }))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "endpoints: /metrics /debug/syncz /debug/configz /debug/config_dump?proxyID=<id>\n"
                .to_string(),
        ),
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json(v: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_string_pretty(v).unwrap_or_default();
    reply(StatusCode::OK, "application/json", body)
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = "x=1&proxyID=sidecar~10.0.0.1~a.default~default.svc.cluster.local%20";
        assert_eq!(
            query_param(q, "proxyID").as_deref(),
            Some("sidecar~10.0.0.1~a.default~default.svc.cluster.local ")
        );
        assert_eq!(query_param(q, "y"), None);
    }
}
