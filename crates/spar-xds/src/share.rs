//! One copy of what several node classes are sent alike.
//!
//! Every workload of a namespace usually sees the same clusters, assignments and routes:
//! 20 workloads of one mesh are 20 node classes whose CDS and EDS outputs are byte for byte
//! the same, and only their inbound listeners differ. Each class is translated and encoded
//! on its own (translation is per class by design), and then its maps are swapped for an
//! identical map another class already holds, or failing that, its resources for identical
//! ones. Memory then grows with what is distinct, not with the number of workloads
//! (bench/control-plane.sh: 20 workloads × 1.6 MB per class), and connections of different
//! classes hold the same `Arc`s, so comparing what they hold is a pointer comparison.

use std::sync::Arc;

use crate::resources::{Encoded, EncodedResource, TypeResources};

/// Shares with `others` what `enc` has identical to them: whole type maps where one of
/// `others` has the same map, else single resources (against the first of `others` that
/// has the type). `enc`'s maps must not be shared yet with anything that relies on their
/// identity (freshly encoded or derived outputs).
pub fn share_with(enc: &mut Encoded, others: &[Arc<Encoded>]) {
    if others.is_empty() {
        return;
    }
    for (type_url, mine) in enc.types.iter_mut() {
        let theirs = others.iter().filter_map(|o| o.types.get(type_url));
        if let Some(same) = theirs.clone().find(|t| same_map(mine, t)) {
            *mine = same.clone();
            continue;
        }
        let (Some(first), Some(map)) = (theirs.clone().next(), Arc::get_mut(mine)) else {
            continue;
        };
        for (name, r) in map.iter_mut() {
            if let Some(t) = first.get(name) {
                if same_resource(r, t) {
                    *r = t.clone();
                }
            }
        }
    }
}

/// The same resource: one allocation, or the same version and bytes.
pub(crate) fn same_resource(a: &Arc<EncodedResource>, b: &Arc<EncodedResource>) -> bool {
    Arc::ptr_eq(a, b) || (a.version == b.version && a.any_bytes() == b.any_bytes())
}

fn same_map(a: &Arc<TypeResources>, b: &Arc<TypeResources>) -> bool {
    Arc::ptr_eq(a, b)
        || (a.len() == b.len()
            && a.iter()
                .zip(b.iter())
                .all(|((na, ra), (nb, rb))| na == nb && same_resource(ra, rb)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::encode;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use spar_translate::{type_url, XdsResources};

    fn output(names: &[&str], listener: &str) -> Encoded {
        let mut enc = encode(&XdsResources {
            clusters: names
                .iter()
                .map(|n| Cluster {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        let l = envoy_types::pb::envoy::config::listener::v3::Listener {
            name: listener.to_string(),
            ..Default::default()
        };
        enc.insert(type_url::LISTENER, listener, &l);
        enc
    }

    #[test]
    fn identical_maps_are_shared_and_different_ones_share_resources() {
        let first = Arc::new(output(&["a", "b"], "inbound-1"));
        let mut second = output(&["a", "b"], "inbound-2");
        share_with(&mut second, std::slice::from_ref(&first));
        assert!(Arc::ptr_eq(
            &second.types[type_url::CLUSTER],
            &first.types[type_url::CLUSTER]
        ));
        assert!(!Arc::ptr_eq(
            &second.types[type_url::LISTENER],
            &first.types[type_url::LISTENER]
        ));

        let mut third = output(&["a", "c"], "inbound-3");
        share_with(&mut third, std::slice::from_ref(&first));
        let (mine, theirs) = (
            &third.types[type_url::CLUSTER],
            &first.types[type_url::CLUSTER],
        );
        assert!(!Arc::ptr_eq(mine, theirs));
        assert!(
            Arc::ptr_eq(&mine["a"], &theirs["a"]),
            "the same cluster is one copy"
        );
        assert_eq!(mine.keys().map(|k| &**k).collect::<Vec<_>>(), ["a", "c"]);
    }
}
