//! Where the server gets each proxy's resources from.
//!
//! [`SnapshotStore`] is the real source: an immutable (ConfigSet, Registry) snapshot behind an
//! `ArcSwap`, translated per proxy on demand and cached per [`NodeClass`] (the node fields
//! translation reads: kind, namespace, labels, own workload) until the next snapshot, so
//! 2,000 sidecars of 20 workloads cost 20 translations per snapshot. [`StaticSource`] serves fixed resources (tests, tools). Either way, a
//! `tokio::sync::watch` of the generation wakes every connection when something changed.
//!
//! Pushes are debounced ([`PushDebounce`], Istio's `PILOT_DEBOUNCE_AFTER` and
//! `PILOT_DEBOUNCE_MAX`): a published snapshot is in force at once (a proxy that connects or
//! subscribes gets it), but connections are woken only after a quiet time, so a burst of
//! changes costs one push. A burst that touched nothing but endpoints uses its own, shorter
//! quiet time, since endpoint changes are frequent, small and latency-sensitive.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use spar_model::{ConfigSet, Kind};
use spar_registry::Registry;
use spar_translate::{NodeClass, ProxyNode, XdsResources};
use tokio::sync::watch;

use crate::resources::{encode, Encoded, EncodedResource, TypeChange, TypeResources};

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

/// When connections are woken after a config change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushDebounce {
    /// Quiet time after the last change before proxies are pushed to; zero pushes at once.
    pub after: Duration,
    /// The quiet time when every change since the last push touched only endpoints
    /// (`Endpoints`, `EndpointSlice`).
    pub endpoints_after: Duration,
    /// However steady the stream of changes, a push goes out this long after the first.
    pub max: Duration,
}

impl PushDebounce {
    /// Every publish wakes connections at once (tests, tools).
    pub const NONE: PushDebounce = PushDebounce {
        after: Duration::ZERO,
        endpoints_after: Duration::ZERO,
        max: Duration::ZERO,
    };

    fn is_none(&self) -> bool {
        self.after.is_zero() && self.endpoints_after.is_zero()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "cannot start the push-debounce thread: {0} (is the process out of threads or memory?)"
    )]
    Thread(std::io::Error),
}

/// A published generation waiting for its push.
struct Pending {
    version: u64,
    endpoints_only: bool,
}

/// The control plane's source: snapshots published by the config store.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    tx: Arc<watch::Sender<u64>>,
    /// To the debounce thread; `None` wakes connections on every publish.
    debounce: Option<Mutex<mpsc::Sender<Pending>>>,
    // Per node class: the generation the entry belongs to and its output. The map lock is
    // only held to find or add an entry; translation runs in the entry's `OnceLock`, outside
    // it, and concurrent askers of one class wait for that one translation instead of
    // repeating it.
    cache: Mutex<HashMap<NodeClass, CacheEntry>>,
    translations: AtomicU64,
    derivations: AtomicU64,
}

/// One node class's output at one generation, and a node of the class (to translate for
/// it again when endpoints change).
struct CacheEntry {
    version: u64,
    cell: Arc<OnceLock<Arc<Encoded>>>,
    node: ProxyNode,
}

impl SnapshotStore {
    /// A store whose every publish wakes connections at once.
    pub fn new(config: ConfigSet) -> SnapshotStore {
        let registry = Registry::build(&config);
        let (tx, _) = watch::channel(1);
        SnapshotStore {
            current: ArcSwap::from_pointee(Snapshot {
                config,
                registry,
                version: 1,
            }),
            tx: Arc::new(tx),
            debounce: None,
            cache: Mutex::new(HashMap::new()),
            translations: AtomicU64::new(0),
            derivations: AtomicU64::new(0),
        }
    }

    /// A store that wakes connections as `debounce` says, from a thread of its own (which
    /// ends when the store is dropped).
    pub fn with_debounce(
        config: ConfigSet,
        debounce: PushDebounce,
    ) -> Result<SnapshotStore, SourceError> {
        let mut store = SnapshotStore::new(config);
        if debounce.is_none() {
            return Ok(store);
        }
        let (tx, rx) = mpsc::channel();
        let wake = store.tx.clone();
        std::thread::Builder::new()
            .name("spar-push-debounce".to_string())
            .spawn(move || run_debounce(&rx, &wake, debounce))
            .map_err(SourceError::Thread)?;
        store.debounce = Some(Mutex::new(tx));
        Ok(store)
    }

    /// How many sidecar/gateway translations ran since start (cache misses).
    pub fn translations(&self) -> u64 {
        self.translations.load(Ordering::Relaxed)
    }

    /// Publishes a new config: builds the registry off to the side, swaps the snapshot in
    /// once, then wakes the connections.
    /// The snapshot is in force at once; connections are woken now or, with a debounce,
    /// once the burst of changes it belongs to is over.
    ///
    /// When only endpoints changed, every node class's output is derived from its previous
    /// one (the assignments of the changed services translated again, the rest shared), so
    /// the push that follows costs no translation and carries only what changed.
    pub fn publish(&self, config: ConfigSet) -> u64 {
        let started = Instant::now();
        let previous = self.current.load_full();
        let version = previous.version + 1;
        let mut endpoints_only = endpoints_only(&previous.config, &config);
        let registry = if endpoints_only {
            let services = endpoint_services(&previous.config, &config);
            let next = previous.registry.with_endpoints_of(&config, &services);
            // Clusters name the identities a service's endpoints run as (auto mTLS SANs):
            // an endpoint change that changes them changes clusters too.
            endpoints_only = same_identities(&previous.registry, &next, &config);
            next
        } else {
            Registry::build(&config)
        };
        let next = Arc::new(Snapshot {
            config,
            registry,
            version,
        });
        let derived = if endpoints_only {
            self.derive_endpoints(&previous, &next)
        } else {
            Vec::new()
        };
        drop(previous);
        tracing::debug!(
            version,
            endpoints_only,
            derived = derived.len(),
            took_us = started.elapsed().as_micros(),
            "snapshot built"
        );
        {
            let mut cache = self.lock_cache();
            self.current.store(next);
            cache.retain(|_, e| e.version == version);
            for (class, entry) in derived {
                cache.insert(class, entry);
            }
        }
        let endpoints_only = self.debounce.is_some() && endpoints_only;
        let pending = Pending {
            version,
            endpoints_only,
        };
        let queued = self.debounce.as_ref().is_some_and(|d| {
            d.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send(pending)
                .is_ok()
        });
        if !queued {
            self.tx.send_replace(version);
        }
        version
    }

    /// The snapshot in force.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The outputs of `next` for every class cached at `previous`, derived from those when
    /// only endpoints changed between the two. A class whose view did not change keeps its
    /// output itself (connections then see nothing to push).
    fn derive_endpoints(
        &self,
        previous: &Snapshot,
        next: &Snapshot,
    ) -> Vec<(NodeClass, CacheEntry)> {
        let Some(hosts) = changed_endpoints(&previous.registry, &next.registry) else {
            return Vec::new();
        };
        let cached: Vec<(NodeClass, ProxyNode, Arc<Encoded>)> = self
            .lock_cache()
            .iter()
            .filter(|(_, e)| e.version == previous.version)
            .filter_map(|(c, e)| Some((c.clone(), e.node.clone(), e.cell.get()?.clone())))
            .collect();
        let mut out = Vec::with_capacity(cached.len());
        let mut derived: Vec<Arc<Encoded>> = Vec::with_capacity(cached.len());
        let mut edits: Vec<EdsEdit> = Vec::new();
        for (class, node, old) in cached {
            let Some(enc) = derive(&old, next, &node, &hosts, &derived, &mut edits) else {
                continue;
            };
            derived.push(enc.clone());
            out.push((
                class,
                CacheEntry {
                    version: next.version,
                    cell: Arc::new(OnceLock::from(enc)),
                    node,
                },
            ));
        }
        self.derivations
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// How many node-class outputs were derived from a previous one (endpoint changes).
    pub fn derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }

    /// The outputs already built for classes at `version`.
    fn outputs_at(&self, version: u64) -> Vec<Arc<Encoded>> {
        self.lock_cache()
            .values()
            .filter(|e| e.version == version)
            .filter_map(|e| e.cell.get().cloned())
            .collect()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<NodeClass, CacheEntry>> {
        // A panic while holding this lock cannot leave the map inconsistent (one insert).
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The services (hostname, namespace) whose endpoints differ; `None` when anything else
/// about the services differs too (then nothing is derived).
fn changed_endpoints(old: &Registry, new: &Registry) -> Option<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    for (a, b) in old.differing_services(new)? {
        let same_otherwise = spar_registry::Service {
            endpoints: Vec::new(),
            ..a.clone()
        } == spar_registry::Service {
            endpoints: Vec::new(),
            ..b.clone()
        };
        if !same_otherwise {
            return None;
        }
        out.insert((a.hostname.clone(), a.namespace.clone()));
    }
    Some(out)
}

/// The Kubernetes services (namespace, name) whose Endpoints or EndpointSlices differ
/// between the two configs, before and after (a slice may change services).
fn endpoint_services(old: &ConfigSet, new: &ConfigSet) -> BTreeSet<(String, String)> {
    fn owner(r: &spar_model::Resource) -> Option<(String, String)> {
        let name = match r.kind {
            Kind::EndpointSlice => r
                .meta
                .labels
                .get(spar_registry::kube::SLICE_SERVICE_LABEL)?,
            Kind::Endpoints => &r.meta.name,
            _ => return None,
        };
        Some((r.meta.namespace.clone(), name.clone()))
    }
    type Index<'a> = HashMap<(Kind, String, String), &'a Arc<spar_model::Resource>>;
    fn of(c: &ConfigSet) -> Index<'_> {
        c.resources()
            .iter()
            .filter(|r| matches!(r.kind, Kind::Endpoints | Kind::EndpointSlice))
            .map(|r| ((r.kind, r.meta.namespace.clone(), r.meta.name.clone()), r))
            .collect()
    }
    let (mut before, after) = (of(old), of(new));
    let mut out = BTreeSet::new();
    for (key, r) in after {
        match before.remove(&key) {
            Some(o) if same_resource(o, r) => {}
            Some(o) => out.extend(owner(o).into_iter().chain(owner(r))),
            None => out.extend(owner(r)),
        }
    }
    out.extend(before.values().filter_map(|r| owner(r)));
    out
}

/// `old` with the assignments of `hosts` translated again for `node`. `None` when that
/// would add an assignment `old` lacks (then the class is translated in full). The new
/// assignments are shared with `derived` (other classes' outputs of this change) where
/// identical; the other types stay `old`'s own maps, which the class's connections hold.
/// One class's new EDS map: the map it was derived from, the assignments that changed (in
/// map order), and the result. Classes usually hold the same map and see the same change:
/// the first one's result is reused by the others instead of each copying the 1,200-entry
/// map and then dropping the copy as a duplicate.
struct EdsEdit {
    previous: Arc<TypeResources>,
    changed: Vec<(Arc<str>, Arc<EncodedResource>)>,
    next: Arc<TypeResources>,
}

fn derive(
    old: &Arc<Encoded>,
    snap: &Snapshot,
    node: &ProxyNode,
    hosts: &BTreeSet<(String, String)>,
    derived: &[Arc<Encoded>],
    edits: &mut Vec<EdsEdit>,
) -> Option<Arc<Encoded>> {
    let eds = spar_translate::type_url::ENDPOINT;
    let previous = old.shared(eds).cloned().unwrap_or_default();
    let mut changed: Vec<(Arc<str>, Arc<EncodedResource>)> = Vec::new();
    for cla in spar_translate::endpoints_of(&snap.config, &snap.registry, node, hosts) {
        let r = crate::resources::encode_one(eds, &cla);
        let (name, held) = previous.get_key_value(cla.cluster_name.as_str())?;
        if held.version != r.version {
            changed.push((name.clone(), Arc::new(r)));
        }
    }
    if changed.is_empty() {
        return Some(old.clone());
    }
    changed.sort_by(|a, b| a.0.cmp(&b.0));
    let same_edit = |e: &&EdsEdit| {
        Arc::ptr_eq(&e.previous, &previous)
            && e.changed.len() == changed.len()
            && e.changed
                .iter()
                .zip(&changed)
                .all(|((na, ra), (nb, rb))| na == nb && crate::share::same_resource(ra, rb))
    };
    let (next, changed) = match edits.iter().find(same_edit) {
        Some(e) => (e.next.clone(), e.changed.clone()),
        None => {
            let mut map = (*previous).clone();
            for (name, r) in &changed {
                map.insert(name.clone(), r.clone());
            }
            let mut only_eds = Encoded::default();
            only_eds.types.insert(eds, Arc::new(map));
            crate::share::share_with(&mut only_eds, derived);
            let next = only_eds.types.remove(eds).unwrap_or_default();
            edits.push(EdsEdit {
                previous: previous.clone(),
                changed: changed.clone(),
                next: next.clone(),
            });
            (next, changed)
        }
    };
    let mut enc = Encoded {
        types: old.types.clone(),
        changes: Default::default(),
    };
    enc.types.insert(eds, next);
    let changed = changed.into_iter().map(|(name, _)| name).collect();
    enc.changes.insert(eds, TypeChange { previous, changed });
    Some(Arc::new(enc))
}

/// Whether every service's identities ([`spar_registry::Service::identities`]) are the
/// same in `new` as in `old`, a registry it was derived from by `with_endpoints_of`.
fn same_identities(old: &Registry, new: &Registry, config: &ConfigSet) -> bool {
    let td = config
        .mesh()
        .trust_domain
        .as_deref()
        .unwrap_or("cluster.local");
    old.services()
        .zip(new.services())
        .all(|(a, b)| std::ptr::eq(a, b) || a.identities(td) == b.identities(td))
}

/// Whether `new` differs from `old` in endpoints only: every other resource (kind,
/// metadata, body, in order) and the mesh config are equal.
fn endpoints_only(old: &ConfigSet, new: &ConfigSet) -> bool {
    fn rest(c: &ConfigSet) -> impl Iterator<Item = &Arc<spar_model::Resource>> {
        c.resources()
            .iter()
            .filter(|r| !matches!(r.kind, Kind::Endpoints | Kind::EndpointSlice))
    }
    let (mut a, mut b) = (rest(old), rest(new));
    if old.mesh() != new.mesh() || old.resolved_jwks() != new.resolved_jwks() {
        return false;
    }
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if same_resource(x, y) => {}
            _ => return false,
        }
    }
}

/// The same kind, metadata and body; a resource of a file that did not change is the same
/// allocation in both configs, so most comparisons are one pointer comparison.
fn same_resource(a: &Arc<spar_model::Resource>, b: &Arc<spar_model::Resource>) -> bool {
    Arc::ptr_eq(a, b) || (a.kind == b.kind && a.meta == b.meta && a.body == b.body)
}

/// The debounce loop: the first change of a burst starts it; it ends after a quiet time
/// (the endpoints-only one while every change was endpoints-only) or at `max` after the
/// first change, and then wakes the connections with the newest generation.
fn run_debounce(rx: &mpsc::Receiver<Pending>, wake: &watch::Sender<u64>, d: PushDebounce) {
    while let Ok(first) = rx.recv() {
        let start = Instant::now();
        let (mut version, mut endpoints_only, mut last, mut merged) =
            (first.version, first.endpoints_only, start, 0u32);
        loop {
            let quiet = if endpoints_only {
                d.endpoints_after
            } else {
                d.after
            };
            let due = (last + quiet).min(start + d.max.max(quiet));
            let Some(wait) = due.checked_duration_since(Instant::now()) else {
                break;
            };
            match rx.recv_timeout(wait) {
                Ok(p) => {
                    version = p.version;
                    endpoints_only &= p.endpoints_only;
                    last = Instant::now();
                    merged += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    wake.send_replace(version);
                    return;
                }
            }
        }
        tracing::debug!(
            version,
            merged,
            endpoints_only,
            waited_ms = start.elapsed().as_millis(),
            "push"
        );
        wake.send_replace(version);
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
            let fresh = || CacheEntry {
                version: snap.version,
                cell: Arc::default(),
                node: node.clone(),
            };
            let entry = cache.entry(class).or_insert_with(fresh);
            if entry.version < snap.version {
                *entry = fresh();
            }
            if entry.version == snap.version {
                entry.cell.clone()
            } else {
                // A newer snapshot was published meanwhile: answer this (stale) caller without
                // replacing the newer entry.
                Arc::default()
            }
        };
        cell.get_or_init(|| {
            self.translations.fetch_add(1, Ordering::Relaxed);
            let mut enc = encode(&spar_translate::translate(
                &snap.config,
                &snap.registry,
                node,
            ));
            crate::share::share_with(&mut enc, &self.outputs_at(snap.version));
            Arc::new(enc)
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
            Arc::make_mut(out.types.entry(t).or_default())
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
        assert!(
            Arc::ptr_eq(&first, &store.resources(&node)),
            "the same config keeps the same output (nothing to push)"
        );
        store.publish(slice("10.0.0.1"));
        assert!(!Arc::ptr_eq(&first, &store.resources(&node)));
        assert_eq!(store.load().version, 3);
    }

    #[test]
    fn an_endpoint_change_derives_what_a_full_translation_gives() {
        let store = SnapshotStore::new(with_route("10.0.0.1"));
        let node = ProxyNode::parse_id("sidecar~10.0.0.9~b.default~default.svc.cluster.local")
            .expect("node id");
        let before = store.resources(&node);
        assert_eq!(store.translations(), 1);
        store.publish(with_route("10.0.0.2"));
        let after = store.resources(&node);
        assert_eq!(store.translations(), 1, "derived, not translated");
        assert_eq!(store.derivations(), 1);
        let snap = store.load();
        assert_eq!(
            snap.registry,
            Registry::build(&snap.config),
            "incremental registry"
        );
        let full = encode(&spar_translate::translate(
            &snap.config,
            &snap.registry,
            &node,
        ));
        assert_eq!(after.types, full.types);
        let eds = spar_translate::type_url::ENDPOINT;
        let change = after.change(eds).expect("derived");
        assert!(Arc::ptr_eq(
            &change.previous,
            before.shared(eds).expect("eds")
        ));
        assert_eq!(change.changed.len(), 1);
        for t in [
            spar_translate::type_url::CLUSTER,
            spar_translate::type_url::LISTENER,
        ] {
            assert!(
                Arc::ptr_eq(before.shared(t).expect("t"), after.shared(t).expect("t")),
                "{t} is shared, not copied"
            );
        }
        // A routing change is translated in full.
        store.publish(slice("10.0.0.2"));
        store.resources(&node);
        assert_eq!(store.translations(), 2);
    }

    #[test]
    fn classes_that_see_the_same_endpoint_change_share_one_new_map() {
        let store = SnapshotStore::new(with_route("10.0.0.1"));
        let a = ProxyNode::parse_id("sidecar~10.0.0.8~a.default~default.svc.cluster.local")
            .expect("node id");
        let mut b = ProxyNode::parse_id("sidecar~10.0.0.9~b.default~default.svc.cluster.local")
            .expect("node id");
        b.labels.insert("app".into(), "b".into());
        let eds = spar_translate::type_url::ENDPOINT;
        let (a0, b0) = (store.resources(&a), store.resources(&b));
        assert_eq!(store.translations(), 2, "two classes");
        assert!(Arc::ptr_eq(
            a0.shared(eds).unwrap(),
            b0.shared(eds).unwrap()
        ));
        store.publish(with_route("10.0.0.2"));
        let (a1, b1) = (store.resources(&a), store.resources(&b));
        assert_eq!(store.derivations(), 2);
        assert!(
            Arc::ptr_eq(a1.shared(eds).unwrap(), b1.shared(eds).unwrap()),
            "one new EDS map for both classes"
        );
        let snap = store.load();
        for (node, out) in [(&a, &a1), (&b, &b1)] {
            let full = encode(&spar_translate::translate(
                &snap.config,
                &snap.registry,
                node,
            ));
            assert_eq!(out.types, full.types);
            assert_eq!(out.change(eds).expect("derived").changed.len(), 1);
        }
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

    fn mesh_text(ip: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: a, namespace: default}}\n\
             spec: {{ports: [{{name: http, port: 80}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: a-1, namespace: default, labels: {{kubernetes.io/service-name: a}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 80}}]\nendpoints: [{{addresses: [\"{ip}\"]}}]\n"
        )
    }

    fn load(text: &str) -> ConfigSet {
        let c = ConfigSet::load([("a.yaml", text)], &Default::default());
        assert!(!c.has_errors(), "{:?}", c.diagnostics());
        c
    }

    fn slice(ip: &str) -> ConfigSet {
        load(&mesh_text(ip))
    }

    fn with_route(ip: &str) -> ConfigSet {
        load(&format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: a, namespace: default}}\n\
             spec: {{hosts: [a], http: [{{route: [{{destination: {{host: a}}}}]}}]}}\n",
            mesh_text(ip)
        ))
    }

    /// Polls until the store wakes its watchers; returns the generation and how long it took.
    fn wait_woken(rx: &mut watch::Receiver<u64>) -> (u64, Duration) {
        let start = Instant::now();
        while !rx.has_changed().expect("sender alive") {
            assert!(start.elapsed() < Duration::from_secs(10), "never woken");
            std::thread::yield_now();
        }
        (*rx.borrow_and_update(), start.elapsed())
    }

    #[test]
    fn a_burst_of_changes_is_one_push_of_the_newest() {
        let debounce = PushDebounce {
            after: Duration::from_millis(50),
            endpoints_after: Duration::from_millis(50),
            max: Duration::from_secs(10),
        };
        let store = SnapshotStore::with_debounce(slice("10.0.0.1"), debounce).expect("store");
        let mut rx = store.changes();
        let last = (2..=6)
            .map(|i| store.publish(slice(&format!("10.0.0.{i}"))))
            .last()
            .expect("published");
        // In force at once, pushed later.
        assert_eq!(store.load().version, last);
        let (woken, _) = wait_woken(&mut rx);
        assert_eq!(woken, last, "one wake-up, for the newest snapshot");
        assert!(!rx.has_changed().expect("sender alive"));
    }

    #[test]
    fn an_endpoint_change_that_changes_identities_is_a_full_change() {
        let pods = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p1, namespace: default}\n\
                    spec: {serviceAccountName: alpha, containers: [{name: a}]}\nstatus: {podIP: 10.0.0.1}\n\
                    ---\napiVersion: v1\nkind: Pod\nmetadata: {name: p2, namespace: default}\n\
                    spec: {serviceAccountName: beta, containers: [{name: a}]}\nstatus: {podIP: 10.0.0.2}\n\
                    ---\napiVersion: v1\nkind: Pod\nmetadata: {name: p3, namespace: default}\n\
                    spec: {serviceAccountName: alpha, containers: [{name: a}]}\nstatus: {podIP: 10.0.0.3}\n";
        let with_pods = |ip: &str| load(&format!("{}{pods}", mesh_text(ip)));
        let debounce = PushDebounce {
            after: Duration::from_secs(3600),
            endpoints_after: Duration::from_millis(1),
            max: Duration::from_secs(3600),
        };
        let store = SnapshotStore::with_debounce(with_pods("10.0.0.1"), debounce).expect("store");
        let mut rx = store.changes();
        // Same service account behind the new address: endpoints only, pushed at once.
        let v = store.publish(with_pods("10.0.0.3"));
        assert_eq!(wait_woken(&mut rx).0, v);
        // alpha → beta: the cluster's SANs change, so it waits like any full change.
        store.publish(with_pods("10.0.0.2"));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!rx.has_changed().expect("sender alive"));
    }

    #[test]
    fn endpoint_only_changes_use_their_own_quiet_time() {
        let debounce = PushDebounce {
            after: Duration::from_secs(3600),
            endpoints_after: Duration::from_millis(1),
            max: Duration::from_secs(3600),
        };
        let store = SnapshotStore::with_debounce(slice("10.0.0.1"), debounce).expect("store");
        let mut rx = store.changes();
        let v = store.publish(slice("10.0.0.2"));
        assert_eq!(wait_woken(&mut rx).0, v);
        // A routing change waits for the (here: hour-long) quiet time.
        store.publish(with_route("10.0.0.2"));
        assert!(!rx.has_changed().expect("sender alive"));
        assert!(endpoints_only(&slice("10.0.0.1"), &slice("10.0.0.9")));
        assert!(!endpoints_only(&slice("10.0.0.1"), &with_route("10.0.0.1")));
    }
}
