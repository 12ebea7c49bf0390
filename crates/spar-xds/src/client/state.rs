//! What the client knows across streams: per type, what the handler holds (name → version,
//! the last accepted version) and what the current stream has subscribed to; and the rule
//! that decides what to subscribe next (Envoy's warming order).
//!
//! CDS is subscribed first. Once clusters are applied, EDS follows for the names the
//! handler wants; LDS waits until the first EDS answer (or until clusters need no EDS, were
//! rejected, or [`WARMING_TIMEOUT`] passed), then RDS follows for the route names the
//! listeners use. SDS is subscribed whenever the handler wants secrets. After a reconnect
//! everything that was subscribed is asked for again at once, since the handler is warm.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use spar_translate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

use super::{NamedResource, TypeUpdate, XdsHandler};
use crate::resources::{fnv1a, is_wildcard_type};

/// How long listeners wait for cluster endpoints on the first fetch (Envoy's
/// `initial_fetch_timeout` default).
pub(crate) const WARMING_TIMEOUT: Duration = Duration::from_secs(15);

/// What a stream asks for of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interest {
    Wildcard,
    Names(BTreeSet<String>),
}

impl Interest {
    fn from_wanted(w: Option<BTreeSet<String>>) -> Interest {
        w.map_or(Interest::Wildcard, Interest::Names)
    }

    fn is_nothing(&self) -> bool {
        matches!(self, Interest::Names(n) if n.is_empty())
    }

    /// SotW `resource_names`: empty for the legacy wildcard of CDS/LDS, `*` for others.
    pub(crate) fn resource_names(&self, type_url: &str) -> Vec<String> {
        match self {
            Interest::Wildcard if is_wildcard_type(type_url) => Vec::new(),
            Interest::Wildcard => vec!["*".to_string()],
            Interest::Names(n) => n.iter().cloned().collect(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct TypeState {
    /// What this stream has subscribed to (None: nothing yet on this stream).
    pub(crate) sent: Option<Interest>,
    /// What the handler holds: name → version.
    pub(crate) held: BTreeMap<String, String>,
    /// The last accepted version (SotW `version_info`, Delta `system_version_info`).
    pub(crate) version: String,
    /// The nonce of the last response of this type on this stream.
    pub(crate) nonce: String,
    /// Whether a response of this type was ever applied.
    pub(crate) applied: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) types: BTreeMap<String, TypeState>,
    /// Listeners may be subscribed (clusters are warm, or we gave up waiting).
    pub(crate) listeners_open: bool,
}

impl State {
    /// A new stream: nothing is subscribed on it and no nonce is known.
    pub(crate) fn begin_stream(&mut self) {
        for st in self.types.values_mut() {
            st.sent = None;
            st.nonce.clear();
        }
    }

    pub(crate) fn get(&mut self, type_url: &str) -> &mut TypeState {
        self.types.entry(type_url.to_string()).or_default()
    }

    fn applied(&self, type_url: &str) -> bool {
        self.types.get(type_url).is_some_and(|t| t.applied)
    }

    /// What each type should be subscribed to now, in warming order (types not listed
    /// are not subscribed).
    fn desired(&self, handler: &dyn XdsHandler) -> Vec<(&'static str, Interest)> {
        let mut out = vec![(CLUSTER, Interest::Wildcard)];
        if self.applied(CLUSTER) {
            out.push((ENDPOINT, Interest::from_wanted(handler.wanted(ENDPOINT))));
        }
        if self.listeners_open {
            out.push((LISTENER, Interest::Wildcard));
        }
        if self.applied(LISTENER) {
            out.push((ROUTE, Interest::from_wanted(handler.wanted(ROUTE))));
        }
        out.push((SECRET, Interest::from_wanted(handler.wanted(SECRET))));
        out
    }

    /// The subscriptions that differ from what this stream asked for: (type, old, new).
    /// Asking for nothing of a type never asked for is no change.
    pub(crate) fn changes(
        &self,
        handler: &dyn XdsHandler,
    ) -> Vec<(&'static str, Option<Interest>, Interest)> {
        self.desired(handler)
            .into_iter()
            .filter_map(|(t, want)| {
                let sent = self.types.get(t).and_then(|s| s.sent.clone());
                match &sent {
                    None if want.is_nothing() => None,
                    Some(old) if *old == want => None,
                    _ => Some((t, sent, want)),
                }
            })
            .collect()
    }

    /// The handler drops what a named subscription no longer names: in state of the world,
    /// EDS, RDS and SDS responses carry only what changed, so nothing else says so.
    pub(crate) fn drop_unsubscribed(
        &mut self,
        handler: &dyn XdsHandler,
        type_url: &str,
        now: &Interest,
    ) {
        let Interest::Names(names) = now else {
            return;
        };
        let st = self.get(type_url);
        let dropped: Vec<String> = st
            .held
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        if dropped.is_empty() {
            return;
        }
        for n in &dropped {
            st.held.remove(n);
        }
        let update = TypeUpdate {
            type_url: type_url.to_string(),
            version: st.version.clone(),
            resources: Vec::new(),
            removed: dropped,
            full_state: false,
        };
        if let Err(e) = handler.apply(&update) {
            tracing::warn!(type_url, error = %e, "the proxy kept resources it no longer subscribes to");
        }
    }

    /// Called after a response was handled (applied or rejected): opens listeners once
    /// clusters are warm.
    pub(crate) fn after_response(&mut self, type_url: &str, ok: bool, handler: &dyn XdsHandler) {
        if self.listeners_open {
            return;
        }
        let open = match type_url {
            CLUSTER => !ok || Interest::from_wanted(handler.wanted(ENDPOINT)).is_nothing(),
            ENDPOINT => true,
            _ => false,
        };
        if open {
            self.listeners_open = true;
        }
    }

    /// Hands `update` to the handler and records what it now holds. If the handler
    /// rejects a response of several resources, each resource (and each removal) is
    /// offered on its own, as Envoy applies resources one by one: the good ones land, each
    /// bad one changes nothing, and the NACK lists every rejection.
    pub(crate) fn apply(
        &mut self,
        handler: &dyn XdsHandler,
        update: &TypeUpdate,
    ) -> Result<(), String> {
        let whole = handler.apply(update);
        let pieces = update.resources.len() + update.removed.len();
        if let Err(e) = whole {
            if pieces <= 1 {
                return Err(e);
            }
            let mut errors = Vec::new();
            for piece in split(update) {
                match handler.apply(&piece) {
                    Ok(()) => self.record(&piece),
                    Err(e) => errors.push(e),
                }
            }
            if !errors.is_empty() {
                return Err(errors.join("; "));
            }
        } else {
            self.record(update);
        }
        self.get(&update.type_url).version = update.version.clone();
        Ok(())
    }

    fn record(&mut self, update: &TypeUpdate) {
        let st = self.get(&update.type_url);
        if update.full_state {
            st.held.clear();
        }
        for n in &update.removed {
            st.held.remove(n);
        }
        for r in &update.resources {
            st.held.insert(r.name.clone(), r.version.clone());
        }
        st.applied = true;
    }
}

/// One update per resource and per removal (none of them the full state).
fn split(update: &TypeUpdate) -> Vec<TypeUpdate> {
    let one = |resources: Vec<NamedResource>, removed: Vec<String>| TypeUpdate {
        type_url: update.type_url.clone(),
        version: update.version.clone(),
        resources,
        removed,
        full_state: false,
    };
    let mut out: Vec<TypeUpdate> = update
        .removed
        .iter()
        .map(|n| one(Vec::new(), vec![n.clone()]))
        .collect();
    out.extend(
        update
            .resources
            .iter()
            .map(|r| one(vec![r.clone()], Vec::new())),
    );
    out
}

/// Checks that a resource is of the response's type.
pub(crate) fn check_type(type_url: &str, name: &str, any: &Any) -> Result<(), String> {
    if any.type_url != type_url {
        return Err(format!(
            "resource {name:?} has type {}, the response is of type {type_url}",
            any.type_url
        ));
    }
    Ok(())
}

// Listener, Cluster, RouteConfiguration, Secret and ClusterLoadAssignment (its cluster_name)
// all carry their name as field 1; reading only that field avoids decoding the resource
// twice (the handler decodes it).
#[derive(Clone, PartialEq, Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

// `envoy.service.discovery.v3.Resource`, which SotW servers may wrap resources in.
const WRAPPED: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// The handler's `Any` (prost-types) from the wire's (envoy-types); moves the bytes.
pub(crate) fn to_prost(any: Any) -> prost_types::Any {
    prost_types::Any {
        type_url: any.type_url,
        value: any.value,
    }
}

/// A SotW response's resources, named; the per-resource version is a hash of the bytes.
/// For LDS and CDS the response is the whole set (what it leaves out is removed); for the
/// other types it carries only what changed, as the xDS protocol allows, and resources go
/// away when the subscription stops naming them.
pub(crate) fn sotw_update(
    type_url: &str,
    version: &str,
    resources: &[Any],
    held: &BTreeMap<String, String>,
) -> Result<TypeUpdate, String> {
    let mut out = Vec::with_capacity(resources.len());
    let mut seen = BTreeSet::new();
    for any in resources {
        let (name, any) = if any.type_url == WRAPPED {
            let r = envoy_types::pb::envoy::service::discovery::v3::Resource::decode(
                any.value.as_slice(),
            )
            .map_err(|e| format!("cannot decode a wrapped resource: {e}"))?;
            let inner = r
                .resource
                .ok_or_else(|| format!("wrapped resource {:?} has no body", r.name))?;
            (r.name, inner)
        } else {
            let n = NameOnly::decode(any.value.as_slice())
                .map_err(|e| format!("cannot read the name of a {} resource: {e}", any.type_url))?;
            (n.name, any.clone())
        };
        check_type(type_url, &name, &any)?;
        if !seen.insert(name.clone()) {
            return Err(format!("resource {name:?} appears twice in one response"));
        }
        out.push(NamedResource {
            version: format!("{:016x}", fnv1a(&any.value)),
            name,
            resource: to_prost(any),
        });
    }
    let full_state = crate::resources::is_wildcard_type(type_url);
    let removed = if full_state {
        held.keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    Ok(TypeUpdate {
        type_url: type_url.to_string(),
        version: version.to_string(),
        resources: out,
        removed,
        full_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    fn any(name: &str) -> Any {
        Any {
            type_url: CLUSTER.to_string(),
            value: Cluster {
                name: name.to_string(),
                ..Default::default()
            }
            .encode_to_vec(),
        }
    }

    /// Wants fixed names per type.
    struct Wants(Vec<(&'static str, Option<Vec<&'static str>>)>);

    impl XdsHandler for Wants {
        fn apply(&self, _update: &TypeUpdate) -> Result<(), String> {
            Ok(())
        }
        fn wanted(&self, type_url: &str) -> Option<BTreeSet<String>> {
            self.0
                .iter()
                .find(|(t, _)| *t == type_url)
                .and_then(|(_, n)| n.clone())
                .map(|n| n.iter().map(|s| s.to_string()).collect())
        }
    }

    fn update(type_url: &str) -> TypeUpdate {
        TypeUpdate {
            type_url: type_url.to_string(),
            version: "1".to_string(),
            resources: Vec::new(),
            removed: Vec::new(),
            full_state: false,
        }
    }

    fn types(changes: &[(&'static str, Option<Interest>, Interest)]) -> Vec<&'static str> {
        changes.iter().map(|(t, _, _)| *t).collect()
    }

    fn mark_sent(st: &mut State, h: &dyn XdsHandler) {
        for (t, _, new) in st.changes(h) {
            st.get(t).sent = Some(new);
        }
    }

    #[test]
    fn warming_order_cds_then_eds_then_lds_then_rds() {
        let h = Wants(vec![
            (ENDPOINT, Some(vec!["c1"])),
            (ROUTE, Some(vec!["r1"])),
            (SECRET, Some(vec![])),
        ]);
        let mut st = State::default();
        assert_eq!(
            types(&st.changes(&h)),
            [CLUSTER],
            "no SDS: no secrets wanted"
        );
        mark_sent(&mut st, &h);
        st.apply(&h, &update(CLUSTER)).expect("applies");
        st.after_response(CLUSTER, true, &h);
        assert!(!st.listeners_open, "EDS first");
        assert_eq!(types(&st.changes(&h)), [ENDPOINT]);
        mark_sent(&mut st, &h);
        st.apply(&h, &update(ENDPOINT)).expect("applies");
        st.after_response(ENDPOINT, true, &h);
        assert_eq!(types(&st.changes(&h)), [LISTENER]);
        mark_sent(&mut st, &h);
        st.apply(&h, &update(LISTENER)).expect("applies");
        assert_eq!(types(&st.changes(&h)), [ROUTE]);
        mark_sent(&mut st, &h);
        assert!(st.changes(&h).is_empty());
        // A new stream asks for everything again at once.
        st.begin_stream();
        assert_eq!(types(&st.changes(&h)), [CLUSTER, ENDPOINT, LISTENER, ROUTE]);
    }

    #[test]
    fn wildcard_and_secret_interest() {
        let h = Wants(vec![(ENDPOINT, None), (SECRET, Some(vec!["default"]))]);
        let mut st = State::default();
        let c = st.changes(&h);
        assert_eq!(types(&c), [CLUSTER, SECRET]);
        assert_eq!(c[1].2.resource_names(SECRET), ["default"]);
        mark_sent(&mut st, &h);
        st.apply(&h, &update(CLUSTER)).expect("applies");
        let c = st.changes(&h);
        assert_eq!(c[0].2, Interest::Wildcard);
        assert_eq!(
            c[0].2.resource_names(ENDPOINT),
            ["*"],
            "explicit wildcard for EDS"
        );
        assert!(
            Interest::Wildcard.resource_names(CLUSTER).is_empty(),
            "legacy wildcard"
        );
    }

    #[test]
    fn a_rejected_response_is_applied_resource_by_resource() {
        struct RejectB;
        impl XdsHandler for RejectB {
            fn apply(&self, u: &TypeUpdate) -> Result<(), String> {
                match u.resources.iter().find(|r| r.name == "b") {
                    Some(_) => Err("b is bad".to_string()),
                    None => Ok(()),
                }
            }
            fn wanted(&self, _: &str) -> Option<BTreeSet<String>> {
                None
            }
        }
        let r = |n: &str| NamedResource {
            name: n.to_string(),
            version: format!("v-{n}"),
            resource: prost_types::Any::default(),
        };
        let mut st = State::default();
        let mut u = update(CLUSTER);
        u.resources = vec![r("a"), r("b"), r("c")];
        let err = st.apply(&RejectB, &u).expect_err("b is rejected");
        assert_eq!(err, "b is bad");
        let held: Vec<&String> = st.types[CLUSTER].held.keys().collect();
        assert_eq!(held, ["a", "c"]);
        assert!(
            st.types[CLUSTER].version.is_empty(),
            "the version is not accepted"
        );
    }

    #[test]
    fn sotw_names_resources_and_reports_what_went_away() {
        let held: BTreeMap<String, String> = [
            ("a".to_string(), "x".to_string()),
            ("gone".to_string(), "y".to_string()),
        ]
        .into();
        let u = sotw_update(CLUSTER, "7", &[any("a"), any("b")], &held).expect("valid");
        let names: Vec<&str> = u.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(u.removed, ["gone"]);
        assert!(u.full_state);
        let err = sotw_update(LISTENER, "7", &[any("a")], &held).expect_err("wrong type");
        assert!(err.contains("has type"), "{err}");
        let err = sotw_update(CLUSTER, "7", &[any("a"), any("a")], &held).expect_err("dup");
        assert!(err.contains("twice"), "{err}");
        // EDS in state of the world: what the response leaves out stays.
        let cla = |n: &str| Any {
            type_url: ENDPOINT.to_string(),
            value: envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
                cluster_name: n.to_string(),
                ..Default::default()
            }
            .encode_to_vec(),
        };
        let u = sotw_update(ENDPOINT, "8", &[cla("a")], &held).expect("valid");
        assert!(u.removed.is_empty() && !u.full_state);
    }
}
