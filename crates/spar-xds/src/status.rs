//! What each connected proxy was sent and what it accepted, type by type, for
//! `spar ctl proxy-status` (`/debug/syncz`) and `/debug/config_dump`.
//!
//! Written on ACK/NACK and sends, read by the debug endpoints; never on a request path, so a
//! plain mutex is enough.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::resources::{short_name, TypeResources};

/// Istio's proxy-status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SyncState {
    /// The proxy accepted the last thing sent.
    Synced,
    /// Sent, not yet acknowledged.
    #[default]
    Stale,
    /// The proxy rejected the last thing sent; it keeps running its last accepted version.
    Nacked,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TypeStatus {
    pub state: SyncState,
    pub sent_version: String,
    pub sent_nonce: String,
    pub acked_version: String,
    /// The `error_detail` of the last NACK, kept until a later ACK.
    pub last_nack: Option<String>,
    /// How many resources the last response held (SotW) or changed (Delta).
    pub sent_resources: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProxyStatus {
    pub proxy: String,
    pub connection: u64,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    /// By Istio's short type name (`cds`, `eds`, `lds`, `rds`, `sds`).
    pub types: BTreeMap<&'static str, TypeStatus>,
}

#[derive(Default)]
struct Inner {
    proxies: BTreeMap<u64, ProxyStatus>,
    // What each connection currently holds, for config_dump; shared with the node class's
    // output when the proxy holds all of a type (the usual case), so not a copy per proxy.
    sent: BTreeMap<u64, BTreeMap<&'static str, Arc<TypeResources>>>,
}

/// Status of every connected proxy.
#[derive(Default)]
pub struct StatusRegistry {
    inner: Mutex<Inner>,
    next: AtomicU64,
}

/// Removes a connection's status when the connection ends.
pub struct Registration {
    registry: Arc<StatusRegistry>,
    pub id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        inner.proxies.remove(&self.id);
        inner.sent.remove(&self.id);
    }
}

/// Overwrites `s` in place (no allocation when it has the room).
fn set(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

impl StatusRegistry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each update is a single map operation; a poisoned lock holds consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn connect(self: &Arc<Self>, proxy: &str, protocol: &'static str) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().proxies.insert(
            id,
            ProxyStatus {
                proxy: proxy.to_string(),
                connection: id,
                protocol,
                types: BTreeMap::new(),
            },
        );
        Registration {
            registry: self.clone(),
            id,
        }
    }

    fn update(&self, conn: u64, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        if let Some(p) = self.lock().proxies.get_mut(&conn) {
            f(p.types.entry(short_name(type_url)).or_default());
        }
    }

    /// A response went out. `holds` is what the proxy will hold once it accepts it.
    pub fn sent(
        &self,
        conn: u64,
        type_url: &str,
        version: &str,
        nonce: &str,
        count: usize,
        holds: Arc<TypeResources>,
    ) {
        // One lock for both maps (2,000 connections take it on every push); what the
        // proxy held before is dropped after the lock is released, since the last
        // reference to a 1,200-resource map may be this one.
        let before = {
            let mut inner = self.lock();
            let inner = &mut *inner;
            if let Some(p) = inner.proxies.get_mut(&conn) {
                let t = p.types.entry(short_name(type_url)).or_default();
                t.state = SyncState::Stale;
                set(&mut t.sent_version, version);
                set(&mut t.sent_nonce, nonce);
                t.sent_resources = count;
            }
            inner
                .sent
                .entry(conn)
                .or_default()
                .insert(short_name(type_url), holds)
        };
        drop(before);
    }

    pub fn acked(&self, conn: u64, type_url: &str, version: &str) {
        self.update(conn, type_url, |t| {
            t.state = SyncState::Synced;
            set(&mut t.acked_version, version);
            t.last_nack = None;
        });
    }

    pub fn nacked(&self, conn: u64, type_url: &str, accepted_version: &str, error: &str) {
        self.update(conn, type_url, |t| {
            t.state = SyncState::Nacked;
            t.acked_version = accepted_version.to_string();
            t.last_nack = Some(error.to_string());
        });
    }

    /// Every connection's status, in connection order.
    pub fn all(&self) -> Vec<ProxyStatus> {
        self.lock().proxies.values().cloned().collect()
    }

    /// What the connections of `proxy` were sent, by short type name.
    pub fn sent_to(&self, proxy: &str) -> Vec<(u64, BTreeMap<&'static str, Arc<TypeResources>>)> {
        let inner = self.lock();
        inner
            .proxies
            .values()
            .filter(|p| p.proxy == proxy)
            .filter_map(|p| {
                inner
                    .sent
                    .get(&p.connection)
                    .map(|s| (p.connection, s.clone()))
            })
            .collect()
    }
}
