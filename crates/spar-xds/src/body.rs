//! The encoded resource list of a whole-type response, made once and shared by every
//! connection that sends it.
//!
//! A full push sends each of 2,000 proxies the same 1,200 clusters and 1,200 assignments
//! (node classes share identical maps, [`crate::share`]). Writing each response from the
//! resources copied all of them into a fresh buffer per proxy: 3.2 GB of copies and as many
//! freshly faulted pages for a 1.6 MB config. Here the repeated field that lists the
//! resources is encoded once per map and protocol, and every response hands out slices of
//! it ([`Bytes`] reference counts), so the only per-proxy copy left is the kernel's.
//!
//! An entry lives as long as its map: it holds the map weakly, and entries whose map is gone
//! are dropped when the next one is made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use bytes::Bytes;
use prost::encoding::{encode_key, encode_varint, WireType};

use crate::resources::TypeResources;

/// Which response message the list is for: its field 2 differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    /// `DiscoveryResponse.resources`: each an `Any`.
    Sotw,
    /// `DeltaDiscoveryResponse.resources`: each a `Resource { version, resource, name }`.
    Delta,
}

struct Entry {
    map: Weak<TypeResources>,
    body: Arc<OnceLock<Bytes>>,
}

/// Shared encoded lists, by map (its address, checked against a live weak reference).
#[derive(Default)]
pub(crate) struct Bodies {
    entries: Mutex<HashMap<(usize, Protocol), Entry>>,
}

impl Bodies {
    /// The encoded field-2 entries of every resource of `map`, in name order.
    pub(crate) fn get(&self, map: &Arc<TypeResources>, protocol: Protocol) -> Bytes {
        let key = (Arc::as_ptr(map) as usize, protocol);
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            // A live weak reference at this address is this very map (an address is reused
            // only after the map it held is gone).
            match entries.get(&key) {
                Some(e) if e.map.strong_count() > 0 => e.body.clone(),
                _ => {
                    entries.retain(|_, e| e.map.strong_count() > 0);
                    let body = Arc::new(OnceLock::new());
                    entries.insert(
                        key,
                        Entry {
                            map: Arc::downgrade(map),
                            body: body.clone(),
                        },
                    );
                    body
                }
            }
        };
        // Encoded outside the lock; connections wanting the same list wait for the one
        // encoding it rather than encoding it again.
        cell.get_or_init(|| encode(map, protocol)).clone()
    }

    /// Lists held now (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .values()
            .filter(|e| e.map.strong_count() > 0)
            .count()
    }
}

fn encode(map: &TypeResources, protocol: Protocol) -> Bytes {
    let len = map
        .iter()
        .map(|(n, r)| crate::wire::resource_entry_len(protocol, n, r))
        .sum();
    let mut buf = Vec::with_capacity(len);
    for (name, r) in map {
        match protocol {
            Protocol::Sotw => crate::wire::put_bytes(2, r.any_bytes(), &mut buf),
            Protocol::Delta => {
                encode_key(2, WireType::LengthDelimited, &mut buf);
                encode_varint(crate::wire::resource_len(name, r) as u64, &mut buf);
                crate::wire::put_string(1, &r.version, &mut buf);
                crate::wire::put_bytes(2, r.any_bytes(), &mut buf);
                crate::wire::put_string(3, name, &mut buf);
            }
        }
    }
    debug_assert_eq!(buf.len(), len);
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::encode_one;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use spar_translate::type_url;

    fn map(names: &[&str]) -> Arc<TypeResources> {
        Arc::new(
            names
                .iter()
                .map(|n| {
                    let c = Cluster {
                        name: n.to_string(),
                        ..Default::default()
                    };
                    (Arc::from(*n), Arc::new(encode_one(type_url::CLUSTER, &c)))
                })
                .collect(),
        )
    }

    #[test]
    fn one_list_per_map_and_protocol_while_the_map_lives() {
        let bodies = Bodies::default();
        let a = map(&["a", "b"]);
        let first = bodies.get(&a, Protocol::Sotw);
        let again = bodies.get(&a, Protocol::Sotw);
        assert_eq!(first.as_ptr(), again.as_ptr(), "shared, not encoded again");
        let delta = bodies.get(&a, Protocol::Delta);
        assert_ne!(first, delta);
        assert_eq!(bodies.len(), 2);
        drop(a);
        let b = map(&["c"]);
        bodies.get(&b, Protocol::Sotw);
        assert_eq!(bodies.len(), 1, "the dropped map's lists went with it");
    }
}
