//! The admin server (Envoy's port 15000, loopback only): `/ready` (200 `LIVE` only after
//! the first full configuration, 503 while warming or draining), `/healthz`,
//! `/config_dump` (JSON), `/certs` (the certificates it holds, as Envoy's), `/stats/prometheus` (and `/stats`), `/drain` and
//! `/quitquitquit` (POST), `/logging?level=` (POST).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::config::listener::{NetworkFilter, Routes};
use crate::config::route::{Action, Target};
use crate::http::body::{reply, Body};
use crate::proxy::Shared;

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn json_reply(v: &Value) -> Response<Body> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let mut r = reply(200, &text);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let post = req.method() == Method::POST;
    match path {
        "/ready" => {
            if shared.is_draining() {
                reply(503, "DRAINING\n")
            } else if shared.store.load().is_ready() {
                reply(200, "LIVE\n")
            } else {
                reply(503, "PRE_INITIALIZING\n")
            }
        }
        "/healthz" => reply(200, "OK\n"),
        "/stats/prometheus" | "/stats" => {
            let mut text = shared.stats.prometheus();
            cluster_stats(shared, &mut text);
            let mut r = reply(200, &text);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        "/config_dump" => json_reply(&config_dump(shared)),
        "/certs" => json_reply(&crate::admin_certs::certs_json(&shared.store.load())),
        "/drain" | "/drain_listeners" if post => {
            shared.start_drain();
            reply(200, "OK\n")
        }
        "/quitquitquit" if post => {
            shared.quit();
            reply(200, "OK\n")
        }
        "/logging" if post => {
            // Envoy's forms: `level=<l>` for everything, `<logger>=<l>` for one logger
            // (here a tracing target, e.g. `spar_proxy::http`).
            let change: Vec<String> = query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| match kv.strip_prefix("level=") {
                    Some(l) => l.to_string(),
                    None => kv.to_string(),
                })
                .collect();
            match &shared.options.log_level {
                Some(_) if change.is_empty() => reply(
                    400,
                    "usage: POST /logging?level=<trace|debug|info|warn|error|off> or /logging?<target>=<level>\n",
                ),
                Some(c) => match (c.change)(&change.join(",")) {
                    Ok(now) => reply(200, &format!("active log filter: {now}\n")),
                    Err(e) => reply(400, &format!("{e}\n")),
                },
                None => reply(501, "this proxy cannot change its log level\n"),
            }
        }
        "/logging" if req.method() == Method::GET => match &shared.options.log_level {
            Some(c) => reply(200, &format!("active log filter: {}\n", (c.current)())),
            None => reply(501, "this proxy cannot change its log level\n"),
        },
        "/drain" | "/drain_listeners" | "/quitquitquit" | "/logging" => {
            reply(405, "use POST\n")
        }
        _ => reply(
            404,
            "endpoints: /ready /healthz /config_dump /stats/prometheus; POST /drain /quitquitquit /logging?level=\n",
        ),
    }
}

/// Per-cluster upstream counters (of the clusters in the current snapshot).
fn cluster_stats(shared: &Shared, out: &mut String) {
    use std::fmt::Write;
    let snap = shared.store.load();
    let _ = writeln!(out, "# TYPE envoy_cluster_upstream_rq_total counter");
    for b in snap.balancers.values() {
        let _ = writeln!(
            out,
            "envoy_cluster_upstream_rq_total{{cluster_name=\"{}\"}} {}",
            b.cluster.name,
            b.rq_total.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE envoy_cluster_upstream_rq_xx counter");
    for b in snap.balancers.values() {
        for (i, c) in b.rq_xx.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(
                    out,
                    "envoy_cluster_upstream_rq_xx{{cluster_name=\"{}\",envoy_response_code_class=\"{}\"}} {v}",
                    b.cluster.name,
                    i + 1
                );
            }
        }
    }
}

/// A JSON view of the snapshot: what the proxy will do, not the raw protos.
pub fn config_dump(shared: &Shared) -> Value {
    let snap = shared.store.load();
    let bound = shared.bound();
    let listeners: Vec<Value> = snap
        .listeners
        .values()
        .map(|l| {
            json!({
                "name": l.name,
                "address": l.address.to_string(),
                "bound": bound.get(&l.name).map(|a| a.to_string()),
                "bind_to_port": l.bind_to_port,
                "use_original_dst": l.use_original_dst,
                "filter_chains": l.chains.iter().map(|c| json!({
                    "name": c.name,
                    "destination_port": c.matcher.destination_port,
                    "server_names": c.matcher.server_names,
                    "transport_protocol": c.matcher.transport_protocol,
                    "application_protocols": c.matcher.application_protocols,
                    "filter": match &c.filter {
                        NetworkFilter::Http(h) => match &h.routes {
                            Routes::Rds(n) => json!({"http_connection_manager": {"rds": n}}),
                            Routes::Inline(rc) => json!({"http_connection_manager": {"route_config": rc.name}}),
                        },
                        NetworkFilter::Tcp(t) => json!({"tcp_proxy": {"clusters": t.clusters}}),
                    },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let routes: Vec<Value> = snap
        .routes
        .values()
        .map(|rc| {
            json!({
                "name": rc.name,
                "virtual_hosts": rc.virtual_hosts.iter().map(|vh| json!({
                    "name": vh.name,
                    "domains": vh.domains,
                    "routes": vh.routes.iter().map(|r| json!({
                        "name": r.name,
                        "istio_config": r.istio_config,
                        "action": match &r.action {
                            Action::Forward(f) => match &f.target {
                                Target::Cluster(c) => json!({"cluster": c}),
                                Target::Weighted(w) => json!({"weighted_clusters":
                                    w.iter().map(|t| json!([t.cluster, t.weight])).collect::<Vec<_>>()}),
                                Target::Header(h) => json!({"cluster_header": h.as_str()}),
                            },
                            Action::Redirect(_) => json!("redirect"),
                            Action::Direct { status, .. } => json!({"direct_response": status}),
                        },
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let clusters: Vec<Value> = snap
        .balancers
        .values()
        .map(|b| {
            json!({
                "name": b.cluster.name,
                "type": format!("{:?}", b.cluster.discovery),
                "lb_policy": format!("{:?}", b.cluster.lb),
                "http2": b.cluster.http2,
                "active_requests": b.active_requests.load(Ordering::Relaxed),
                "hosts": b.hosts.iter().map(|h| json!({
                    "address": h.authority,
                    "weight": h.weight,
                    "healthy": h.healthy,
                    "ejected": b.is_ejected(h),
                    "active_requests": h.active.load(Ordering::Relaxed),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "version": snap.version,
        "ready": snap.is_ready(),
        "listeners": listeners,
        "routes": routes,
        "clusters": clusters,
        "secrets": snap.secrets.keys().collect::<Vec<_>>(),
        "local_secrets": snap.local_secrets.keys().collect::<Vec<_>>(),
    })
}
