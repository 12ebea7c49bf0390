//! Locality load balancing: the DestinationRule's (or MeshConfig's) `localityLbSetting`
//! applied to one proxy's view of a cluster's endpoints, the way istiod does it.
//!
//! - `distribute`: for the first rule whose `from` matches the proxy's locality, each
//!   endpoint locality gets the weight of the `to` entry it matches (shared in proportion to
//!   the localities' own weights when a wildcard matches several); localities no entry
//!   matches get no traffic. The cluster turns on Envoy's locality-weighted balancing.
//! - failover (only with outlier detection, or Envoy would never leave priority 0):
//!   priority 0 for the proxy's region/zone/subzone, 1 same zone, 2 same region, 3 other
//!   regions; with `failover: [{from, to}]`, a region other than `to` drops to 4. With
//!   `failoverPriority` labels, endpoints are first ranked by how many of the listed labels
//!   (in order) they share with the proxy (`label=value` fixes the value). Priorities are then
//!   renumbered 0..N without gaps.
//!
//! The proxy's locality is part of its node class, so the EDS output may differ per locality.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Locality;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use spar_model::istio::types::LoadBalancerSettings;

use crate::util::u32v;
use crate::Ctx;

/// The effective setting for one cluster, from either source.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Setting {
    pub distribute: Vec<(String, BTreeMap<String, u32>)>,
    pub failover: Vec<(String, String)>,
    pub failover_priority: Vec<String>,
}

impl Setting {
    pub fn distributes(&self) -> bool {
        !self.distribute.is_empty()
    }
}

/// The DestinationRule's setting when it has one (unless it disables locality balancing),
/// else MeshConfig's (unless disabled there).
pub fn setting(ctx: &Ctx<'_>, lb: Option<&LoadBalancerSettings>) -> Option<Setting> {
    if let Some(dr) = lb.and_then(|l| l.locality_lb_setting.as_ref()) {
        if dr.enabled == Some(false) {
            return None;
        }
        return Some(Setting {
            distribute: dr
                .distribute
                .iter()
                .map(|d| (d.from.clone().unwrap_or_default(), d.to.clone()))
                .collect(),
            failover: dr
                .failover
                .iter()
                .map(|f| {
                    (
                        f.from.clone().unwrap_or_default(),
                        f.to.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            failover_priority: dr.failover_priority.clone(),
        });
    }
    let mesh = ctx.config.mesh().locality_lb_setting.as_ref()?;
    if mesh.enabled == Some(false) {
        return None;
    }
    Some(Setting {
        distribute: mesh
            .distribute
            .iter()
            .map(|d| (d.from.clone(), d.to.clone()))
            .collect(),
        failover: mesh
            .failover
            .iter()
            .map(|f| (f.from.clone(), f.to.clone()))
            .collect(),
        failover_priority: mesh.failover_priority.clone(),
    })
}

/// `region/zone/subzone` (parts may be missing) as Envoy's locality.
pub fn parse(l: &str) -> Locality {
    let mut parts = l.split('/');
    Locality {
        region: parts.next().unwrap_or_default().to_string(),
        zone: parts.next().unwrap_or_default().to_string(),
        sub_zone: parts.next().unwrap_or_default().to_string(),
    }
}

/// Whether `l` matches `pattern` (`region/zone/subzone`, a `*` segment matches anything and
/// missing trailing segments match everything below).
pub fn matches(l: &Locality, pattern: &str) -> bool {
    let have = [l.region.as_str(), l.zone.as_str(), l.sub_zone.as_str()];
    pattern
        .split('/')
        .zip(have)
        .all(|(want, have)| want == "*" || want == have)
}

fn failover_level(proxy: &Locality, ep: &Locality) -> u32 {
    match (
        proxy.region == ep.region,
        proxy.zone == ep.zone,
        proxy.sub_zone == ep.sub_zone,
    ) {
        (true, true, true) => 0,
        (true, true, false) => 1,
        (true, false, _) => 2,
        _ => 3,
    }
}

/// Applies `setting` to `la` for a proxy at `proxy` with `proxy_labels`. `labels` gives each
/// endpoint's labels, in `la`'s order (locality by locality).
pub fn apply(
    la: &mut ClusterLoadAssignment,
    labels: &[Vec<&BTreeMap<String, String>>],
    proxy: &Locality,
    proxy_labels: &BTreeMap<String, String>,
    setting: &Setting,
    outlier_detection: bool,
) {
    if setting.distributes() {
        distribute(la, proxy, setting);
    } else if outlier_detection {
        if !setting.failover_priority.is_empty() && !proxy_labels.is_empty() {
            by_labels(la, labels, proxy_labels, &setting.failover_priority);
            if !setting.failover.is_empty() {
                by_locality(la, proxy, &setting.failover);
            }
        } else {
            by_locality(la, proxy, &setting.failover);
        }
    }
}

fn distribute(la: &mut ClusterLoadAssignment, proxy: &Locality, setting: &Setting) {
    let Some((_, to)) = setting
        .distribute
        .iter()
        .find(|(from, _)| matches(proxy, from))
    else {
        return;
    };
    let weight_of =
        |e: &LocalityLbEndpoints| e.load_balancing_weight.as_ref().map_or(1, |w| w.value);
    let mut unmatched: BTreeSet<usize> = (0..la.endpoints.len()).collect();
    let mut new_weights: BTreeMap<usize, u32> = BTreeMap::new();
    for (pattern, weight) in to {
        let hit: Vec<usize> = unmatched
            .iter()
            .copied()
            .filter(|i| {
                let l = la.endpoints[*i].locality.clone().unwrap_or_default();
                matches(&l, pattern)
            })
            .collect();
        let total: u64 = hit
            .iter()
            .map(|i| u64::from(weight_of(&la.endpoints[*i])))
            .sum();
        for i in hit {
            unmatched.remove(&i);
            let own = u64::from(weight_of(&la.endpoints[i]));
            let share = (own * u64::from(*weight)).div_ceil(total.max(1));
            if share > 0 {
                new_weights.insert(i, u32::try_from(share).unwrap_or(u32::MAX));
            }
        }
    }
    for (i, w) in new_weights {
        la.endpoints[i].load_balancing_weight = Some(u32v(w));
    }
    // Localities no `to` entry names get nothing (Envoy refuses a zero weight, so drop them).
    let mut i = 0;
    la.endpoints.retain(|_| {
        let keep = !unmatched.contains(&i);
        i += 1;
        keep
    });
}

fn by_locality(la: &mut ClusterLoadAssignment, proxy: &Locality, failover: &[(String, String)]) {
    for e in &mut la.endpoints {
        let l = e.locality.clone().unwrap_or_default();
        let mut level = failover_level(proxy, &l);
        if level == 3 {
            if let Some((_, to)) = failover.iter().find(|(from, _)| *from == proxy.region) {
                if l.region != *to {
                    level = 4;
                }
            }
        }
        e.priority = e.priority * 5 + level;
    }
    compact(la);
}

fn by_labels(
    la: &mut ClusterLoadAssignment,
    labels: &[Vec<&BTreeMap<String, String>>],
    proxy_labels: &BTreeMap<String, String>,
    priority_labels: &[String],
) {
    let wanted: Vec<(&str, Option<&str>)> = priority_labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (l.as_str(), None),
        })
        .collect();
    let lowest = u32::try_from(wanted.len()).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    for (group, group_labels) in la.endpoints.iter().zip(labels) {
        let mut by_priority: BTreeMap<u32, LocalityLbEndpoints> = BTreeMap::new();
        for (ep, ep_labels) in group.lb_endpoints.iter().zip(group_labels) {
            let mut priority = 0;
            for (j, (key, fixed)) in wanted.iter().enumerate() {
                let proxy_value = fixed.or_else(|| proxy_labels.get(*key).map(String::as_str));
                if proxy_value != ep_labels.get(*key).map(String::as_str) {
                    priority = lowest - u32::try_from(j).unwrap_or(0);
                    break;
                }
            }
            let split = by_priority
                .entry(priority)
                .or_insert_with(|| LocalityLbEndpoints {
                    locality: group.locality.clone(),
                    priority,
                    lb_endpoints: Vec::new(),
                    ..Default::default()
                });
            split.lb_endpoints.push(ep.clone());
        }
        for (_, mut split) in by_priority {
            let weight: u32 = split
                .lb_endpoints
                .iter()
                .map(|e| e.load_balancing_weight.as_ref().map_or(1, |w| w.value))
                .sum();
            split.load_balancing_weight = Some(u32v(weight));
            out.push(split);
        }
    }
    la.endpoints = out;
    compact(la);
}

/// Renumbers priorities 0..N in order, without gaps (Envoy requires it).
fn compact(la: &mut ClusterLoadAssignment) {
    let used: BTreeSet<u32> = la.endpoints.iter().map(|e| e.priority).collect();
    let rank: BTreeMap<u32, u32> = used
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    for e in &mut la.endpoints {
        e.priority = rank[&e.priority];
    }
}
