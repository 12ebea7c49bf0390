//! Upstream HTTP clients: one connection pool per (protocol, connect timeout), shared by
//! every cluster with those settings; hyper keeps connections per host inside it.
//! HTTP/2 (prior knowledge) when the cluster asks for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::Body;

pub type HttpClient = Client<HttpConnector, Body>;

/// The pools, created on first use.
#[derive(Default)]
pub struct Pools {
    clients: Mutex<HashMap<(bool, Duration), HttpClient>>,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pools")
    }
}

impl Pools {
    pub fn client(&self, http2: bool, connect_timeout: Duration) -> HttpClient {
        let mut map = match self.clients.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry((http2, connect_timeout))
            .or_insert_with(|| {
                let mut conn = HttpConnector::new();
                conn.set_connect_timeout(Some(connect_timeout));
                conn.set_nodelay(true);
                conn.enforce_http(true);
                let mut b = Client::builder(TokioExecutor::new());
                b.pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .set_host(false);
                if http2 {
                    b.http2_only(true);
                }
                b.build(conn)
            })
            .clone()
    }
}
