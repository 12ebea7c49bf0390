//! What a connection's proxy holds of one type, and what to send it next.
//!
//! Per connection and type the server knows the subscription (wildcard and/or names) and
//! what the proxy holds. Both are shared rather than copied: after any response the proxy
//! holds exactly the in-scope part of the node class's output, so when that is all of it
//! (wildcard, or names covering every resource, as Envoy's EDS subscription does) the
//! connection keeps a pointer to the class's map; and identical name sets (every sidecar of
//! a workload subscribes to the same clusters) are interned to one copy. 2,000 proxies
//! holding 1,200 assignments each then cost pointers, not 2.4 million map entries.
//!
//! The diff walks the sorted maps side by side (no per-entry lookups); when the class's
//! output was derived from the one the proxy holds ([`TypeChange`]), only the changed
//! names are looked at.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::iter::Peekable;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::resources::{EncodedResource, TypeChange, TypeResources};

/// A set of subscribed names, shared between connections that subscribe to the same set.
pub(crate) type Names = Arc<BTreeSet<Arc<str>>>;

/// What the proxy holds of one type.
#[derive(Debug, Clone)]
pub(crate) enum Holds {
    /// Exactly these resources (shared with the class's output when that is all of it).
    Sent(Arc<TypeResources>),
    /// Names and versions only: what a reconnecting proxy said it has, or what is left of
    /// a response the proxy rejected.
    Versions(BTreeMap<Arc<str>, Arc<str>>),
}

impl Default for Holds {
    fn default() -> Self {
        Holds::Versions(BTreeMap::new())
    }
}

impl Holds {
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Holds::Sent(m) => m.is_empty(),
            Holds::Versions(v) => v.is_empty(),
        }
    }

    pub(crate) fn version(&self, name: &str) -> Option<&Arc<str>> {
        match self {
            Holds::Sent(m) => m.get(name).map(|r| &r.version),
            Holds::Versions(v) => v.get(name),
        }
    }

    /// Name → version, for the rare paths that edit what is held.
    pub(crate) fn to_versions(&self) -> BTreeMap<Arc<str>, Arc<str>> {
        match self {
            Holds::Sent(m) => m
                .iter()
                .map(|(n, r)| (n.clone(), r.version.clone()))
                .collect(),
            Holds::Versions(v) => v.clone(),
        }
    }
}

/// Which resources of a type the proxy asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) wildcard: bool,
    pub(crate) names: &'a BTreeSet<Arc<str>>,
}

impl Scope<'_> {
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// Resources to send: a whole map (a first response; no per-resource reference counting,
/// which 2,000 connections would otherwise do on the same shared counters), or a list.
#[derive(Debug, Clone)]
pub(crate) enum Items {
    All(Arc<TypeResources>),
    Some(Vec<(Arc<str>, Arc<EncodedResource>)>),
}

impl Default for Items {
    fn default() -> Self {
        Items::Some(Vec::new())
    }
}

impl Items {
    pub(crate) fn len(&self) -> usize {
        match self {
            Items::All(m) => m.len(),
            Items::Some(v) => v.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (&Arc<str>, &Arc<EncodedResource>)> + '_> {
        match self {
            Items::All(m) => Box::new(m.iter()),
            Items::Some(v) => Box::new(v.iter().map(|(n, r)| (n, r))),
        }
    }

    /// The items after `last` (all of them without one), in order.
    pub(crate) fn after<'a>(
        &'a self,
        last: Option<&str>,
        index: usize,
    ) -> Box<dyn Iterator<Item = (&'a Arc<str>, &'a Arc<EncodedResource>)> + 'a> {
        match (self, last) {
            (Items::All(m), Some(l)) => Box::new(
                m.range::<str, _>((std::ops::Bound::Excluded(l), std::ops::Bound::Unbounded)),
            ),
            (Items::All(m), None) => Box::new(m.iter()),
            (Items::Some(v), _) => Box::new(v[index.min(v.len())..].iter().map(|(n, r)| (n, r))),
        }
    }
}

/// What to send so that the proxy holds the in-scope part of the class's output.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    pub(crate) updated: Items,
    pub(crate) removed: Vec<Arc<str>>,
    /// What the proxy holds once it accepts the response.
    pub(crate) after: Arc<TypeResources>,
}

/// Advances a sorted iterator to `name`; returns the entry there, if any.
fn seek<'a, V: 'a, I: Iterator<Item = (&'a Arc<str>, V)>>(
    it: &mut Peekable<I>,
    name: &str,
) -> Option<V> {
    while let Some((k, _)) = it.peek() {
        // Held and subscribed names share the class's strings: most comparisons are of a
        // string with itself, which the address answers without reading the bytes.
        let order = if std::ptr::eq(&***k, name) {
            std::cmp::Ordering::Equal
        } else {
            (***k).cmp(name)
        };
        match order {
            std::cmp::Ordering::Less => {
                it.next();
            }
            std::cmp::Ordering::Equal => return it.next().map(|(_, v)| v),
            std::cmp::Ordering::Greater => return None,
        }
    }
    None
}

fn same(a: &Arc<EncodedResource>, b: &Arc<EncodedResource>) -> bool {
    Arc::ptr_eq(a, b) || a.version == b.version
}

/// Compares what the proxy holds with `all` (the class's output of this type).
pub(crate) fn diff(
    all: &Arc<TypeResources>,
    change: Option<&TypeChange>,
    scope: Scope<'_>,
    holds: &Holds,
) -> Diff {
    // A wildcard subscription holding the class's map itself: nothing to do.
    if let Holds::Sent(h) = holds {
        if scope.wildcard && Arc::ptr_eq(h, all) {
            return Diff {
                after: all.clone(),
                ..Diff::default()
            };
        }
    }
    // The usual push: the proxy holds exactly the output this one was derived from.
    if let (Holds::Sent(h), Some(ch)) = (holds, change) {
        if Arc::ptr_eq(h, &ch.previous) {
            return Diff {
                updated: Items::Some(
                    ch.changed
                        .iter()
                        .filter(|n| scope.contains(n))
                        .filter_map(|n| Some((n.clone(), all.get(&**n)?.clone())))
                        .collect(),
                ),
                removed: Vec::new(),
                after: all.clone(),
            };
        }
    }
    // A first response covering everything: the map itself.
    if holds.is_empty() && covers(all, scope) {
        return Diff {
            updated: Items::All(all.clone()),
            removed: Vec::new(),
            after: all.clone(),
        };
    }
    let mut updated = Vec::new();
    let mut in_scope = 0usize;
    let mut names = scope.names.iter().map(|n| (n, ())).peekable();
    match holds {
        Holds::Sent(h) => {
            let mut held = h.iter().peekable();
            for (n, r) in all.iter() {
                if !scope.wildcard && seek(&mut names, n).is_none() {
                    continue;
                }
                in_scope += 1;
                if !seek(&mut held, n).is_some_and(|old| same(old, r)) {
                    updated.push((n.clone(), r.clone()));
                }
            }
        }
        Holds::Versions(v) => {
            for (n, r) in all.iter() {
                if !scope.wildcard && seek(&mut names, n).is_none() {
                    continue;
                }
                in_scope += 1;
                if v.get(n) != Some(&r.version) {
                    updated.push((n.clone(), r.clone()));
                }
            }
        }
    }
    let removed = removed(all, scope, holds);
    let after = if in_scope == all.len() {
        all.clone()
    } else {
        Arc::new(
            all.iter()
                .filter(|(n, _)| scope.contains(n))
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect(),
        )
    };
    Diff {
        updated: Items::Some(updated),
        removed,
        after,
    }
}

/// Whether `scope` takes in every resource of `all`.
fn covers(all: &TypeResources, scope: Scope<'_>) -> bool {
    if scope.wildcard {
        return true;
    }
    let mut names = scope.names.iter().map(|n| (n, ())).peekable();
    all.keys().all(|n| seek(&mut names, n).is_some())
}

/// Held names that are gone from `all` or out of scope.
fn removed(all: &TypeResources, scope: Scope<'_>, holds: &Holds) -> Vec<Arc<str>> {
    let mut present = all.iter().peekable();
    let mut names = scope.names.iter().map(|n| (n, ())).peekable();
    let mut out = Vec::new();
    let mut check = |n: &Arc<str>| {
        let gone = seek(&mut present, n).is_none();
        let unsubscribed = !scope.wildcard && seek(&mut names, n).is_none();
        if gone || unsubscribed {
            out.push(n.clone());
        }
    };
    match holds {
        Holds::Sent(h) => h.keys().for_each(&mut check),
        Holds::Versions(v) => v.keys().for_each(&mut check),
    }
    out
}

/// Whether the names a request lists are exactly `names` (in any order), without building
/// a set: Envoy repeats its whole EDS subscription (a name per cluster) in every SotW ACK.
/// Names are compared as bytes (UTF-8 sorts the same as its bytes), so a request's names
/// need not be strings.
pub(crate) fn same_names<N: AsRef<[u8]>>(listed: &[N], names: &BTreeSet<Arc<str>>) -> bool {
    if listed.len() != names.len() {
        return false;
    }
    let mut sorted: Vec<&[u8]> = listed.iter().map(AsRef::as_ref).collect();
    if !sorted.is_sorted() {
        sorted.sort_unstable();
    }
    sorted.iter().zip(names).all(|(a, b)| *a == b.as_bytes())
}

/// One copy of each distinct name set in use.
#[derive(Default)]
pub(crate) struct NameSets {
    /// By hash of the set; weak, so a set no connection uses any more is freed.
    sets: Mutex<HashMap<u64, Vec<WeakNames>>>,
    /// The key set of a class's map, by the map's address (checked against the weak).
    keys: Mutex<HashMap<usize, (Weak<TypeResources>, Names)>>,
}

/// Whether `listed` (any order) are exactly the sorted `keys`.
fn same_keys<'a, N: AsRef<[u8]>>(
    listed: &[N],
    keys: impl Iterator<Item = (&'a Arc<str>, ())>,
) -> bool {
    let mut sorted: Vec<&[u8]> = listed.iter().map(AsRef::as_ref).collect();
    if !sorted.is_sorted() {
        sorted.sort_unstable();
    }
    let mut keys = keys;
    sorted
        .iter()
        .all(|a| keys.next().is_some_and(|(b, ())| *a == b.as_bytes()))
        && keys.next().is_none()
}

type WeakNames = Weak<BTreeSet<Arc<str>>>;

impl NameSets {
    /// The shared copy of `set`, with each name's string shared with `known` (the class's
    /// resources) where it is there.
    /// The set `listed` names, shared. When it names exactly the resources of `known` (a
    /// proxy subscribing to every cluster's assignment), the set is built once per map
    /// and shared by every proxy that does so.
    pub(crate) fn intern_listed<N: AsRef<[u8]>>(
        &self,
        listed: &[N],
        known: Option<&Arc<TypeResources>>,
    ) -> Names {
        if let Some(map) = known {
            let keys = map.keys().map(|k| (k, ()));
            if listed.len() == map.len() && same_keys(listed, keys) {
                return self.keys_of(map);
            }
        }
        // Callers have checked the names are UTF-8 (SotW: `sotw::check_utf8`; delta
        // requests decode them as strings), so nothing is replaced here.
        let set = listed
            .iter()
            .map(|n| Arc::from(String::from_utf8_lossy(n.as_ref()).as_ref()))
            .collect();
        self.intern(set, known.map(|m| &**m))
    }

    fn keys_of(&self, map: &Arc<TypeResources>) -> Names {
        let mut cache = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let id = Arc::as_ptr(map) as usize;
        if let Some((weak, names)) = cache.get(&id) {
            if weak.upgrade().is_some_and(|m| Arc::ptr_eq(&m, map)) {
                return names.clone();
            }
        }
        cache.retain(|_, (w, _)| w.strong_count() > 0);
        let names = self.intern(map.keys().cloned().collect(), None);
        cache.insert(id, (Arc::downgrade(map), names.clone()));
        names
    }

    pub(crate) fn intern(&self, set: BTreeSet<Arc<str>>, known: Option<&TypeResources>) -> Names {
        let set: BTreeSet<Arc<str>> = match known {
            Some(k) => set
                .into_iter()
                .map(|n| k.get_key_value(&*n).map_or(n, |(k, _)| k.clone()))
                .collect(),
            None => set,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        set.hash(&mut h);
        let key = h.finish();
        // A panic while holding this lock leaves at worst a stale weak entry.
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = sets.entry(key).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        if let Some(found) = bucket.iter().filter_map(Weak::upgrade).find(|s| **s == set) {
            return found;
        }
        let shared = Arc::new(set);
        bucket.push(Arc::downgrade(&shared));
        if bucket.len() == 1 && sets.len() > 4096 {
            sets.retain(|_, b| b.iter().any(|w| w.strong_count() > 0));
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::EncodedResource;
    use spar_translate::type_url;

    fn res(pairs: &[(&str, &str)]) -> Arc<TypeResources> {
        Arc::new(
            pairs
                .iter()
                .map(|(n, body)| {
                    (
                        Arc::from(*n),
                        Arc::new(EncodedResource::new(type_url::ENDPOINT, body.as_bytes())),
                    )
                })
                .collect(),
        )
    }

    fn names(list: &[&str]) -> BTreeSet<Arc<str>> {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    fn updated(d: &Diff) -> Vec<&str> {
        d.updated.iter().map(|(n, _)| &**n).collect()
    }

    fn removed_names(d: &Diff) -> Vec<&str> {
        d.removed.iter().map(|n| &**n).collect()
    }

    #[test]
    fn first_response_sends_what_is_in_scope() {
        let all = res(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let empty = BTreeSet::new();
        let d = diff(
            &all,
            None,
            Scope {
                wildcard: true,
                names: &empty,
            },
            &Holds::default(),
        );
        assert_eq!(updated(&d), ["a", "b", "c"]);
        assert!(Arc::ptr_eq(&d.after, &all));
        let some = names(&["b", "z"]);
        let d = diff(
            &all,
            None,
            Scope {
                wildcard: false,
                names: &some,
            },
            &Holds::default(),
        );
        assert_eq!(updated(&d), ["b"]);
        assert_eq!(d.after.len(), 1);
    }

    #[test]
    fn changes_and_removals_are_found_in_one_pass() {
        let old = res(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let new = res(&[("a", "1"), ("b", "2"), ("d", "1")]);
        let empty = BTreeSet::new();
        let d = diff(
            &new,
            None,
            Scope {
                wildcard: true,
                names: &empty,
            },
            &Holds::Sent(old.clone()),
        );
        assert_eq!(updated(&d), ["b", "d"]);
        assert_eq!(removed_names(&d), ["c"]);
        // Unsubscribing from "a" removes it even though it still exists.
        let some = names(&["b", "c", "d"]);
        let d = diff(
            &new,
            None,
            Scope {
                wildcard: false,
                names: &some,
            },
            &Holds::Sent(old),
        );
        assert_eq!(updated(&d), ["b", "d"]);
        assert_eq!(removed_names(&d), ["a", "c"]);
        // Versions from a reconnecting proxy.
        let held: BTreeMap<Arc<str>, Arc<str>> = new
            .iter()
            .map(|(n, r)| (n.clone(), r.version.clone()))
            .collect();
        let d = diff(
            &new,
            None,
            Scope {
                wildcard: true,
                names: &empty,
            },
            &Holds::Versions(held),
        );
        assert!(d.updated.is_empty() && d.removed.is_empty());
    }

    #[test]
    fn a_derived_output_sends_only_what_changed() {
        let old = res(&[("a", "1"), ("b", "1")]);
        let mut next = (*old).clone();
        next.insert(
            Arc::from("b"),
            Arc::new(EncodedResource::new(type_url::ENDPOINT, b"2")),
        );
        let next = Arc::new(next);
        let change = TypeChange {
            previous: old.clone(),
            changed: vec![Arc::from("b")],
        };
        let empty = BTreeSet::new();
        let scope = Scope {
            wildcard: true,
            names: &empty,
        };
        let d = diff(&next, Some(&change), scope, &Holds::Sent(old.clone()));
        assert_eq!(updated(&d), ["b"]);
        // The same answer the full comparison gives.
        let full = diff(&next, None, scope, &Holds::Sent(old));
        assert_eq!(updated(&full), ["b"]);
        assert!(full.removed.is_empty());
    }

    #[test]
    fn a_subscription_to_every_resource_shares_the_maps_key_set() {
        let sets = NameSets::default();
        let all = res(&[("a", "1"), ("b", "1")]);
        let listed = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let one = sets.intern_listed(&listed(&["b", "a"]), Some(&all));
        let two = sets.intern_listed(&listed(&["a", "b"]), Some(&all));
        assert!(Arc::ptr_eq(&one, &two));
        assert_eq!(one.len(), 2);
        let part = sets.intern_listed(&listed(&["a"]), Some(&all));
        assert_eq!(part.len(), 1);
        assert!(same_names(&listed(&["b", "a"]), &one));
        assert!(!same_names(&listed(&["a", "c"]), &one));
        assert!(!same_names(&listed(&["a"]), &one));
    }

    #[test]
    fn equal_name_sets_share_one_copy() {
        let sets = NameSets::default();
        let a = sets.intern(names(&["x", "y"]), None);
        let b = sets.intern(names(&["x", "y"]), None);
        let c = sets.intern(names(&["x"]), None);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        let d = sets.intern(names(&["x", "y"]), None);
        assert_eq!(d.len(), 2);
    }
}
