//! Where the server gets each proxy's resources from.
//!
//! [`SnapshotStore`] is the real source: an immutable (ConfigSet, Registry) snapshot behind an
//! `ArcSwap`, translated per proxy on demand and cached per [`NodeClass`] (the node fields
//! translation reads: kind, namespace, labels, own workload) until the next snapshot, so
//! 2,000 sidecars of 20 workloads cost 20 translations per snapshot. [`StaticSource`] serves fixed resources (tests, tools). Either way, a
//! `tokio::sync::watch` of the generation wakes every connection when something changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use spar_model::ConfigSet;
use spar_registry::Registry;
use spar_translate::{NodeClass, ProxyNode, XdsResources};
use tokio::sync::watch;

use crate::resources::{encode, Encoded};

/// What the ADS server needs from the rest of the control plane.
pub trait ResourceSource: Send + Sync + 'static {
    /// The current generation; it changes whenever any proxy's output may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
    /// The resources for `node` at the current generation, encoded.
    fn resources(&self, node: &ProxyNode) -> Arc<Encoded>;

    /// The resources for a proxyless gRPC client (node metadata `GENERATOR: grpc`), which
    /// names the listeners (its `xds:///` targets) it wants. By default the same as
    /// [`ResourceSource::resources`].
    fn grpc_resources(&self, node: &ProxyNode, listeners: &BTreeSet<String>) -> Arc<Encoded> {
        let _ = listeners;
        self.resources(node)
    }
}

/// One immutable view of the mesh: config, the registry built from it, and its generation.
pub struct Snapshot {
    pub config: ConfigSet,
    pub registry: Registry,
    pub version: u64,
}

/// The control plane's source: snapshots published by the config store.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    tx: watch::Sender<u64>,
    // Per node class: the generation the entry belongs to and its output. The map lock is
    // only held to find or add an entry; translation runs in the entry's `OnceLock`, outside
    // it, and concurrent askers of one class wait for that one translation instead of
    // repeating it.
    cache: Mutex<HashMap<NodeClass, CacheEntry>>,
    translations: AtomicU64,
}

type CacheEntry = (u64, Arc<OnceLock<Arc<Encoded>>>);

impl SnapshotStore {
    pub fn new(config: ConfigSet) -> SnapshotStore {
        let registry = Registry::build(&config);
        let (tx, _) = watch::channel(1);
        SnapshotStore {
            current: ArcSwap::from_pointee(Snapshot {
                config,
                registry,
                version: 1,
            }),
            tx,
            cache: Mutex::new(HashMap::new()),
            translations: AtomicU64::new(0),
        }
    }

    /// How many sidecar/gateway translations ran since start (cache misses).
    pub fn translations(&self) -> u64 {
        self.translations.load(Ordering::Relaxed)
    }

    /// Publishes a new config: builds the registry off to the side, swaps the snapshot in
    /// once, then wakes the connections.
    pub fn publish(&self, config: ConfigSet) -> u64 {
        let registry = Registry::build(&config);
        let version = self.current.load().version + 1;
        self.current.store(Arc::new(Snapshot {
            config,
            registry,
            version,
        }));
        self.lock_cache().retain(|_, (v, _)| *v == version);
        self.tx.send_replace(version);
        version
    }

    /// The snapshot in force.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<NodeClass, CacheEntry>> {
        // A panic while holding this lock cannot leave the map inconsistent (one insert).
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResourceSource for SnapshotStore {
    fn changes(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    fn resources(&self, node: &ProxyNode) -> Arc<Encoded> {
        let snap = self.current.load_full();
        let class = NodeClass::of(&snap.registry, node);
        let cell = {
            let mut cache = self.lock_cache();
            let entry = cache
                .entry(class)
                .or_insert_with(|| (snap.version, Arc::default()));
            if entry.0 < snap.version {
                *entry = (snap.version, Arc::default());
            }
            if entry.0 == snap.version {
                entry.1.clone()
            } else {
                // A newer snapshot was published meanwhile: answer this (stale) caller without
                // replacing the newer entry.
                Arc::default()
            }
        };
        cell.get_or_init(|| {
            self.translations.fetch_add(1, Ordering::Relaxed);
            Arc::new(encode(&spar_translate::translate(
                &snap.config,
                &snap.registry,
                node,
            )))
        })
        .clone()
    }

    fn grpc_resources(&self, node: &ProxyNode, listeners: &BTreeSet<String>) -> Arc<Encoded> {
        // Not cached: each gRPC client names its own targets, and translation for a handful
        // of listeners is small.
        let snap = self.current.load_full();
        let names: Vec<String> = listeners.iter().cloned().collect();
        Arc::new(encode(&spar_translate::translate_grpc(
            &snap.config,
            &snap.registry,
            node,
            &names,
        )))
    }
}

/// Fixed resources, the same for every proxy; `set` replaces them and wakes connections.
pub struct StaticSource {
    current: ArcSwap<Encoded>,
    tx: watch::Sender<u64>,
}

impl StaticSource {
    pub fn new(resources: &XdsResources) -> StaticSource {
        StaticSource::from_encoded(encode(resources))
    }

    pub fn from_encoded(enc: Encoded) -> StaticSource {
        let (tx, _) = watch::channel(1);
        StaticSource {
            current: ArcSwap::from_pointee(enc),
            tx,
        }
    }

    pub fn set(&self, resources: &XdsResources) {
        self.set_encoded(encode(resources));
    }

    pub fn set_encoded(&self, enc: Encoded) {
        self.current.store(Arc::new(enc));
        self.tx.send_modify(|g| *g += 1);
    }
}

impl ResourceSource for StaticSource {
    fn changes(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    fn resources(&self, _node: &ProxyNode) -> Arc<Encoded> {
        self.current.load_full()
    }
}

/// Another source's output with extra resources laid over it (same name wins). Lets an
/// operator or a test add a resource the translator would not produce.
pub struct Overlay<S> {
    pub inner: S,
    pub extra: Encoded,
}

impl<S> Overlay<S> {
    fn lay_over(&self, base: &Encoded) -> Arc<Encoded> {
        let mut out = base.clone();
        for (t, res) in &self.extra.types {
            out.types
                .entry(t)
                .or_default()
                .extend(res.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Arc::new(out)
    }
}

impl<S: ResourceSource> ResourceSource for Overlay<S> {
    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes()
    }

    fn resources(&self, node: &ProxyNode) -> Arc<Encoded> {
        self.lay_over(&self.inner.resources(node))
    }

    fn grpc_resources(&self, node: &ProxyNode, listeners: &BTreeSet<String>) -> Arc<Encoded> {
        self.lay_over(&self.inner.grpc_resources(node, listeners))
    }
}

impl<S: ResourceSource> ResourceSource for Arc<S> {
    fn changes(&self) -> watch::Receiver<u64> {
        (**self).changes()
    }

    fn resources(&self, node: &ProxyNode) -> Arc<Encoded> {
        (**self).resources(node)
    }

    fn grpc_resources(&self, node: &ProxyNode, listeners: &BTreeSet<String>) -> Arc<Encoded> {
        (**self).grpc_resources(node, listeners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_wakes_watchers_and_refreshes_the_per_proxy_cache() {
        let store = SnapshotStore::new(ConfigSet::default());
        let mut rx = store.changes();
        let node = ProxyNode::parse_id("sidecar~10.0.0.1~a.default~default.svc.cluster.local")
            .expect("node id");
        let first = store.resources(&node);
        assert!(
            Arc::ptr_eq(&first, &store.resources(&node)),
            "one translation per proxy per snapshot"
        );
        assert!(!rx.has_changed().expect("sender alive"));
        let v = store.publish(ConfigSet::default());
        assert_eq!(v, 2);
        assert!(rx.has_changed().expect("sender alive"));
        assert_eq!(*rx.borrow_and_update(), 2);
        assert!(!Arc::ptr_eq(&first, &store.resources(&node)));
        assert_eq!(store.load().version, 2);
    }

    #[test]
    fn one_translation_per_node_class_per_snapshot() {
        let store = SnapshotStore::new(ConfigSet::default());
        // 2,000 sidecars of 20 workloads (labels), each with its own IP, pod and account.
        for pod in 0..2000 {
            let id = format!(
                "sidecar~10.1.{}.{}~w{}-{pod}.default~default.svc.cluster.local",
                pod / 250,
                pod % 250,
                pod % 20
            );
            let mut node = ProxyNode::parse_id(&id).expect("node id");
            node.labels.insert("app".into(), format!("w{}", pod % 20));
            node.service_account = format!("sa-{pod}");
            store.resources(&node);
        }
        assert_eq!(store.translations(), 20);
        store.publish(ConfigSet::default());
        let node = ProxyNode::parse_id("sidecar~10.0.0.1~a.default~default.svc.cluster.local")
            .expect("node id");
        store.resources(&node);
        store.resources(&node);
        assert_eq!(store.translations(), 21);
    }
}
