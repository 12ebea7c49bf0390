//! The proxy's configuration: pure domain types built from xDS protos (the one place a
//! resource can be refused, with an error naming the resource and field), gathered in an
//! immutable [`Snapshot`]. A [`Store`] publishes snapshots through `ArcSwap`: an update
//! builds a new snapshot off to the side and swaps it in whole, or changes nothing.
//! Connections read the snapshot once when accepted; in-flight requests finish on the
//! snapshot they started with.

pub mod cluster;
pub mod ext_authz;
pub mod jwt;
pub mod listener;
pub mod matcher;
pub mod metadata;
pub mod rbac;
pub mod rbac_index;
pub mod route;
mod route_proto;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener as PbListener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use spar_translate::type_url;

use crate::lb::ClusterLb;
use cluster::{Cluster, Discovery, Locality};
use listener::Listener;
use route::RouteConfig;

/// Why a resource was refused. The text goes back to the control plane as the NACK's
/// `error_detail`, so it names the resource and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
    #[error("{what}: {feature} (remove it or mark it optional)")]
    Unsupported { what: String, feature: String },
    #[error("resource of type {type_url} does not decode: {why}")]
    Decode { type_url: String, why: String },
    #[error("type {0} is not one spar proxy subscribes to")]
    UnknownType(String),
}

/// Everything the proxy knows, immutable once published.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub listeners: BTreeMap<String, Arc<Listener>>,
    pub routes: BTreeMap<String, Arc<RouteConfig>>,
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    /// EDS assignments by service name.
    pub assignments: BTreeMap<String, Arc<Vec<Locality>>>,
    /// Balancers by cluster name (hosts from EDS or inline).
    pub balancers: BTreeMap<String, Arc<ClusterLb>>,
    /// SDS secrets by name.
    pub secrets: BTreeMap<String, Arc<tls::SecretData>>,
    /// Secrets the proxy made itself (its own identity: `default`, `ROOTCA`); they win over
    /// SDS secrets of the same name and are not asked for over xDS.
    pub local_secrets: BTreeMap<String, Arc<tls::SecretData>>,
    /// Bumped whenever a secret changes (TLS configurations built from them are cached
    /// per generation).
    pub secrets_generation: u64,
    /// Types received at least once.
    pub received: BTreeSet<String>,
    /// Bumped on every publish.
    pub version: u64,
}

fn decode_all<M: Message + Default>(
    type_url: &str,
    resources: &[Any],
) -> Result<Vec<M>, ConfigError> {
    resources
        .iter()
        .map(|a| {
            M::decode(a.value.as_slice()).map_err(|e| ConfigError::Decode {
                type_url: type_url.to_string(),
                why: e.to_string(),
            })
        })
        .collect()
}

/// Replaces (or, for `full_state`, resets) one type's map from converted resources.
fn update<T>(
    map: &mut BTreeMap<String, Arc<T>>,
    items: Vec<(String, T)>,
    removed: &[String],
    full_state: bool,
) -> BTreeSet<String> {
    let mut changed: BTreeSet<String> = BTreeSet::new();
    if full_state {
        changed.extend(map.keys().cloned());
        map.clear();
    }
    for r in removed {
        if map.remove(r).is_some() {
            changed.insert(r.clone());
        }
    }
    for (name, item) in items {
        changed.insert(name.clone());
        map.insert(name, Arc::new(item));
    }
    changed
}

impl Snapshot {
    /// A new snapshot with one xDS update applied; `self` is untouched.
    pub fn apply(
        &self,
        type_url: &str,
        resources: &[Any],
        removed: &[String],
        full_state: bool,
    ) -> Result<Snapshot, ConfigError> {
        let mut next = self.clone();
        match type_url {
            type_url::LISTENER => {
                let items = decode_all::<PbListener>(type_url, resources)?
                    .iter()
                    .map(|l| Listener::from_proto(l).map(|x| (x.name.clone(), x)))
                    .collect::<Result<Vec<_>, _>>()?;
                update(&mut next.listeners, items, removed, full_state);
            }
            type_url::ROUTE => {
                let items = decode_all::<RouteConfiguration>(type_url, resources)?
                    .iter()
                    .map(|r| RouteConfig::from_proto(r).map(|x| (x.name.clone(), x)))
                    .collect::<Result<Vec<_>, _>>()?;
                update(&mut next.routes, items, removed, full_state);
            }
            type_url::CLUSTER => {
                let items = decode_all::<PbCluster>(type_url, resources)?
                    .iter()
                    .map(|c| Cluster::from_proto(c).map(|x| (x.name.clone(), x)))
                    .collect::<Result<Vec<_>, _>>()?;
                let changed = update(&mut next.clusters, items, removed, full_state);
                next.rebuild_balancers(|c| changed.contains(&c.name));
            }
            type_url::ENDPOINT => {
                let items = decode_all::<ClusterLoadAssignment>(type_url, resources)?
                    .iter()
                    .map(|la| cluster::localities(la).map(|l| (la.cluster_name.clone(), l)))
                    .collect::<Result<Vec<_>, _>>()?;
                let changed = update(&mut next.assignments, items, removed, full_state);
                next.rebuild_balancers(|c| {
                    c.discovery == Discovery::Eds && changed.contains(&c.eds_service_name)
                });
            }
            type_url::SECRET => {
                let items = decode_all::<Secret>(type_url, resources)?
                    .iter()
                    .map(|s| tls::secret(s).map(|x| (s.name.clone(), x)))
                    .collect::<Result<Vec<_>, _>>()?;
                update(&mut next.secrets, items, removed, full_state);
                next.secrets_generation += 1;
            }
            other => return Err(ConfigError::UnknownType(other.to_string())),
        }
        next.received.insert(type_url.to_string());
        next.version += 1;
        Ok(next)
    }

    /// New balancers for the clusters `which` selects; the rest keep theirs (and their
    /// live counters).
    fn rebuild_balancers(&mut self, which: impl Fn(&Cluster) -> bool) {
        self.balancers
            .retain(|name, _| self.clusters.contains_key(name));
        for c in self.clusters.values() {
            if !which(c) && self.balancers.contains_key(&c.name) {
                continue;
            }
            let empty = Vec::new();
            let hosts: &[Locality] = match (&c.inline_hosts, c.discovery) {
                (Some(h), _) => h,
                (None, Discovery::Eds) => self
                    .assignments
                    .get(&c.eds_service_name)
                    .map_or(&empty[..], |a| &a[..]),
                (None, _) => &empty,
            };
            self.balancers
                .insert(c.name.clone(), Arc::new(ClusterLb::new(c.clone(), hosts)));
        }
    }

    /// A snapshot holding exactly `x` (tests, `spar ctl explain`).
    pub fn from_xds(x: &spar_translate::XdsResources) -> Result<Snapshot, ConfigError> {
        fn pack<M: Message + prost::Name>(v: &[M]) -> Vec<Any> {
            v.iter()
                .map(|m| Any {
                    type_url: M::type_url(),
                    value: m.encode_to_vec(),
                })
                .collect()
        }
        Snapshot::default()
            .apply(type_url::CLUSTER, &pack(&x.clusters), &[], true)?
            .apply(type_url::ENDPOINT, &pack(&x.endpoints), &[], true)?
            .apply(type_url::LISTENER, &pack(&x.listeners), &[], true)?
            .apply(type_url::ROUTE, &pack(&x.routes), &[], true)?
            .apply(type_url::SECRET, &pack(&x.secrets), &[], true)
    }

    /// Ready once listeners and clusters have arrived and every route configuration and
    /// secret a listener names is there (Envoy's initial warming; endpoints may still be
    /// empty).
    pub fn is_ready(&self) -> bool {
        self.received.contains(type_url::LISTENER)
            && self.received.contains(type_url::CLUSTER)
            && self
                .listeners
                .values()
                .flat_map(|l| l.rds_names())
                .all(|n| self.routes.contains_key(n))
            && self
                .listeners
                .values()
                .flat_map(|l| l.sds_names())
                .all(|n| self.secret(n).is_some())
    }

    /// The secret `name`: the proxy's own, else the one SDS sent.
    pub fn secret(&self, name: &str) -> Option<&Arc<tls::SecretData>> {
        self.local_secrets
            .get(name)
            .or_else(|| self.secrets.get(name))
    }

    /// Names the proxy wants for `type_url` (None: everything, as for LDS and CDS).
    pub fn wanted(&self, type_url: &str) -> Option<BTreeSet<String>> {
        match type_url {
            type_url::ROUTE => Some(
                self.listeners
                    .values()
                    .flat_map(|l| l.rds_names().map(str::to_string).collect::<Vec<_>>())
                    .collect(),
            ),
            type_url::ENDPOINT => Some(
                self.clusters
                    .values()
                    .filter(|c| c.discovery == Discovery::Eds)
                    .map(|c| c.eds_service_name.clone())
                    .collect(),
            ),
            type_url::SECRET => Some(
                self.listeners
                    .values()
                    .flat_map(|l| l.sds_names().map(str::to_string).collect::<Vec<_>>())
                    .chain(self.clusters.values().flat_map(|c| {
                        c.sds_names()
                            .into_iter()
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    }))
                    .filter(|n| !self.local_secrets.contains_key(n))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// The published snapshot. Writers (the xDS handler, the identity task) take turns;
/// readers never block.
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    changed: tokio::sync::watch::Sender<u64>,
    write: std::sync::Mutex<()>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(Snapshot::default())
    }
}

impl Store {
    pub fn new(s: Snapshot) -> Store {
        let (changed, _) = tokio::sync::watch::channel(s.version);
        Store {
            current: ArcSwap::from_pointee(s),
            changed,
            write: std::sync::Mutex::new(()),
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes `s` and wakes everyone watching.
    pub fn publish(&self, s: Snapshot) {
        let v = s.version;
        self.current.store(Arc::new(s));
        self.changed.send_replace(v);
    }

    /// Applies an update and publishes the result; on error nothing changes.
    pub fn apply(
        &self,
        type_url: &str,
        resources: &[Any],
        removed: &[String],
        full_state: bool,
    ) -> Result<(), String> {
        let _turn = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let next = self
            .load()
            .apply(type_url, resources, removed, full_state)
            .map_err(|e| e.to_string())?;
        self.publish(next);
        Ok(())
    }

    /// Installs the proxy's own secrets (replacing earlier ones of the same names).
    pub fn set_local_secrets(&self, secrets: Vec<(String, tls::SecretData)>) {
        let _turn = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.load()).clone();
        for (name, data) in secrets {
            next.local_secrets.insert(name, Arc::new(data));
        }
        next.secrets_generation += 1;
        next.version += 1;
        self.publish(next);
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests;
