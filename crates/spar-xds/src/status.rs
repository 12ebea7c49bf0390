//! What each connected proxy was sent and what it accepted, type by type, for
//! `spar ctl proxy-status` (`/debug/syncz`) and `/debug/config_dump`.
//!
//! Written on ACK/NACK and sends, each connection into its own entry; read by the debug
//! endpoints; never on a request path, so plain mutexes are enough.

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

/// One connection's status and what it holds. Each connection writes only its own entry,
/// so 2,000 connections pushing at once do not queue on one lock; the registry's map is
/// locked only when a connection opens or closes, and by the debug endpoints.
struct Entry {
    status: ProxyStatus,
    // What the connection currently holds, for config_dump; shared with the node class's
    // output when the proxy holds all of a type (the usual case), so not a copy per proxy.
    sent: BTreeMap<&'static str, Arc<TypeResources>>,
}

type EntryRef = Arc<Mutex<Entry>>;

/// Status of every connected proxy.
#[derive(Default)]
pub struct StatusRegistry {
    conns: Mutex<BTreeMap<u64, EntryRef>>,
    next: AtomicU64,
}

/// A connection's entry: written by the connection, removed when the connection ends.
pub struct Registration {
    registry: Arc<StatusRegistry>,
    pub id: u64,
    entry: EntryRef,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// Overwrites `s` in place (no allocation when it has the room).
fn set(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

// Each update is a few field writes; a poisoned lock holds consistent data.
fn lock_entry(e: &Mutex<Entry>) -> MutexGuard<'_, Entry> {
    e.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registration {
    /// A handle the connection keeps to record what it sends and what the proxy answers.
    pub fn status(&self) -> ConnStatus {
        ConnStatus(self.entry.clone())
    }
}

/// Records one connection's sends, ACKs and NACKs.
#[derive(Clone)]
pub struct ConnStatus(EntryRef);

impl ConnStatus {
    fn update(&self, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        f(lock_entry(&self.0)
            .status
            .types
            .entry(short_name(type_url))
            .or_default());
    }

    /// A response went out. `holds` is what the proxy will hold once it accepts it.
    pub fn sent(
        &self,
        type_url: &str,
        version: &str,
        nonce: &str,
        count: usize,
        holds: Arc<TypeResources>,
    ) {
        // What the proxy held before is dropped after the lock is released: the last
        // reference to a 1,200-resource map may be this one.
        let before = {
            let mut e = lock_entry(&self.0);
            let t = e.status.types.entry(short_name(type_url)).or_default();
            t.state = SyncState::Stale;
            set(&mut t.sent_version, version);
            set(&mut t.sent_nonce, nonce);
            t.sent_resources = count;
            e.sent.insert(short_name(type_url), holds)
        };
        drop(before);
    }

    pub fn acked(&self, type_url: &str, version: &str) {
        self.update(type_url, |t| {
            t.state = SyncState::Synced;
            set(&mut t.acked_version, version);
            t.last_nack = None;
        });
    }

    pub fn nacked(&self, type_url: &str, accepted_version: &str, error: &str) {
        self.update(type_url, |t| {
            t.state = SyncState::Nacked;
            t.acked_version = accepted_version.to_string();
            t.last_nack = Some(error.to_string());
        });
    }
}

impl StatusRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, EntryRef>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entries(&self) -> Vec<EntryRef> {
        self.lock().values().cloned().collect()
    }

    pub fn connect(self: &Arc<Self>, proxy: &str, protocol: &'static str) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(Mutex::new(Entry {
            status: ProxyStatus {
                proxy: proxy.to_string(),
                connection: id,
                protocol,
                types: BTreeMap::new(),
            },
            sent: BTreeMap::new(),
        }));
        self.lock().insert(id, entry.clone());
        Registration {
            registry: self.clone(),
            id,
            entry,
        }
    }

    /// Every connection's status, in connection order.
    pub fn all(&self) -> Vec<ProxyStatus> {
        self.entries()
            .iter()
            .map(|e| lock_entry(e).status.clone())
            .collect()
    }

    /// What the connections of `proxy` were sent, by short type name.
    pub fn sent_to(&self, proxy: &str) -> Vec<(u64, BTreeMap<&'static str, Arc<TypeResources>>)> {
        self.entries()
            .iter()
            .filter_map(|e| {
                let e = lock_entry(e);
                (e.status.proxy == proxy).then(|| (e.status.connection, e.sent.clone()))
            })
            .collect()
    }
}
