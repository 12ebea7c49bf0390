//! The running proxy: binds the listeners the snapshot asks for (re-binding as LDS
//! changes), serves the admin endpoints, and drains on request. Everything long-lived
//! shares one [`Shared`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Store;
use crate::http::upstream::Pools;
use crate::stats::Stats;

/// Applies a log filter change (`debug`, or `target=level,...`); returns the filter in force.
pub type LogChangeFn = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Changes the log filter (`/logging`) and reports it; the binary owns the subscriber.
#[derive(Clone)]
pub struct LogControl {
    pub change: LogChangeFn,
    /// The filter in force.
    pub current: Arc<dyn Fn() -> String + Send + Sync>,
}

#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// Admin server address (loopback); `None`: no admin server.
    pub admin: Option<SocketAddr>,
    /// Where to bind a listener instead of its xDS address, by listener name (every
    /// port is a flag: `virtualOutbound` → `--outbound-port`, ...).
    pub bind: BTreeMap<String, SocketAddr>,
    /// How long draining waits for connections to finish.
    pub drain_time: Duration,
    /// The explicit forward proxy's address (HTTP absolute-form, CONNECT, SOCKS5); `None`:
    /// none.
    pub forward: Option<SocketAddr>,
    /// The proxy's namespace: short names given to the forward proxy are searched in it.
    pub namespace: String,
    pub log_level: Option<LogControl>,
    /// Runs after each new configuration is in force; the binary returns the memory the
    /// old one held to the kernel (the allocator keeps freed pages for a while).
    pub after_config: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyOptions")
            .field("admin", &self.admin)
            .field("bind", &self.bind)
            .field("drain_time", &self.drain_time)
            .finish()
    }
}

/// How often a listener whose port was busy is bound again.
const BIND_RETRY: Duration = Duration::from_millis(250);

/// The name the forward proxy's listener has among the bound ones (not an xDS listener).
pub const FORWARD_LISTENER: &str = "spar-forward-proxy";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot bind the forward proxy on {addr}: {source} (is another proxy using this --forward-port?)")]
    Forward {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind the admin server on {addr}: {source} (is another proxy using this --admin-port?)")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What every connection and task shares.
pub struct Shared {
    pub store: Arc<Store>,
    pub upstream: Pools,
    pub stats: Stats,
    /// `true` once draining started.
    pub drain: watch::Receiver<bool>,
    drain_tx: watch::Sender<bool>,
    /// `true` once the proxy should exit.
    quit: watch::Sender<bool>,
    pub options: ProxyOptions,
    /// TLS server configurations, built once per chain and secrets generation.
    pub tls: crate::tls::ServerConfigs,
    /// Upstream TLS client configurations, likewise.
    pub tls_clients: crate::tls::client::ClientConfigs,
    bound: Mutex<HashMap<String, (SocketAddr, JoinHandle<()>)>>,
}

impl Shared {
    pub fn start_drain(&self) {
        self.drain_tx.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.drain.borrow()
    }

    pub fn quit(&self) {
        self.quit.send_replace(true);
    }

    /// Where each bound listener listens, by name.
    pub fn bound(&self) -> BTreeMap<String, SocketAddr> {
        let map = match self.bound.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.iter().map(|(k, (a, _))| (k.clone(), *a)).collect()
    }

    /// Binds listeners the snapshot has and unbinds those it dropped. A listener whose
    /// port cannot be bound (a previous proxy still closing it, say) is logged once and
    /// retried every [`BIND_RETRY`] until it binds or the snapshot drops it. Returns
    /// whether every wanted listener is bound.
    async fn reconcile(self: &Arc<Self>, reported: &mut HashSet<String>) -> bool {
        if self.is_draining() {
            return true;
        }
        let snap = self.store.load();
        let wanted: BTreeMap<String, SocketAddr> = snap
            .listeners
            .values()
            .filter(|l| l.bind_to_port)
            .map(|l| {
                let addr = self.options.bind.get(&l.name).copied().unwrap_or(l.address);
                (l.name.clone(), addr)
            })
            .collect();
        let mut to_bind = Vec::new();
        {
            let mut map = match self.bound.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.retain(|name, (addr, task)| {
                // Ephemeral binds (port 0) keep their real address.
                let keep = name == FORWARD_LISTENER
                    || wanted
                        .get(name)
                        .is_some_and(|w| w == addr || (w.port() == 0 && w.ip() == addr.ip()));
                if !keep {
                    task.abort();
                    tracing::info!(listener = %name, %addr, "listener removed");
                }
                keep
            });
            for (name, addr) in &wanted {
                if !map.contains_key(name) {
                    to_bind.push((name.clone(), *addr));
                }
            }
        }
        reported.retain(|name| to_bind.iter().any(|(n, _)| n == name));
        let mut all_bound = true;
        for (name, addr) in to_bind {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    reported.remove(&name);
                    let real = l.local_addr().unwrap_or(addr);
                    tracing::info!(listener = %name, addr = %real, "listening");
                    let task = tokio::spawn(crate::listener::accept_loop(
                        self.clone(),
                        Arc::from(name.as_str()),
                        l,
                    ));
                    let mut map = match self.bound.lock() {
                        Ok(m) => m,
                        Err(p) => p.into_inner(),
                    };
                    map.insert(name, (real, task));
                }
                Err(e) => {
                    all_bound = false;
                    if reported.insert(name.clone()) {
                        tracing::error!(
                            listener = %name, %addr,
                            "cannot bind: {e}; retrying every {BIND_RETRY:?} until the port is free"
                        );
                    }
                }
            }
        }
        all_bound
    }

    fn stop_listeners(&self) {
        let mut map = match self.bound.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        for (_, (_, task)) in map.drain() {
            task.abort();
        }
    }
}

/// A running proxy.
pub struct Proxy {
    pub shared: Arc<Shared>,
    pub admin_addr: Option<SocketAddr>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Binds the admin server and the snapshot's listeners, then follows the store.
    pub async fn start(store: Arc<Store>, options: ProxyOptions) -> Result<Proxy, ProxyError> {
        let (drain_tx, drain) = watch::channel(false);
        let (quit, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: store.clone(),
            upstream: Pools::default(),
            stats: Stats::default(),
            drain,
            drain_tx,
            quit,
            options: options.clone(),
            tls: Default::default(),
            tls_clients: Default::default(),
            bound: Mutex::new(HashMap::new()),
        });
        let admin_addr = match options.admin {
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ProxyError::Admin { addr, source })?;
                let real = l.local_addr().unwrap_or(addr);
                tokio::spawn(crate::admin::serve(shared.clone(), l));
                Some(real)
            }
            None => None,
        };
        if let Some(addr) = options.forward {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Forward { addr, source })?;
            let real = l.local_addr().unwrap_or(addr);
            tracing::info!(addr = %real, "forward proxy listening");
            let task = tokio::spawn(crate::forward::accept_loop(shared.clone(), l));
            let mut map = shared.bound.lock().unwrap_or_else(|p| p.into_inner());
            map.insert(FORWARD_LISTENER.to_string(), (real, task));
        }
        let mut reported = HashSet::new();
        let mut all_bound = shared.reconcile(&mut reported).await;
        let mut changes = store.subscribe();
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                if all_bound {
                    if changes.changed().await.is_err() {
                        return;
                    }
                } else {
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() { return },
                        () = tokio::time::sleep(BIND_RETRY) => {}
                    }
                }
                all_bound = s.reconcile(&mut reported).await;
                if let Some(after) = &s.options.after_config {
                    after();
                }
            }
        });
        Ok(Proxy {
            shared,
            admin_addr,
            task,
        })
    }

    /// The address a listener is bound to.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.shared.bound().get(name).copied()
    }

    /// Stops accepting, lets connections finish (up to `drain_time`), then returns.
    pub async fn drain(&self) {
        self.shared.start_drain();
        self.shared.stop_listeners();
        self.task.abort();
        let deadline = tokio::time::Instant::now() + self.shared.options.drain_time;
        while self
            .shared
            .stats
            .active_cx
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resolves when `/quitquitquit` was called.
    pub async fn quit_requested(&self) {
        let mut rx = self.shared.quit.subscribe();
        let _ = rx.wait_for(|q| *q).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.stop_listeners();
    }
}
