//! Deterministic bytes for route configurations.
//!
//! prost encodes protobuf `map` fields in `HashMap` iteration order, which changes from one
//! map to the next. A route with both a fault and a CORS policy has two
//! `typed_per_filter_config` entries, so the same route could encode to different bytes,
//! get a different content version, and be pushed again for nothing. This rewrites the
//! encoded message at the wire level, sorting the entries of those map fields; the result
//! decodes to an equal message.

/// Wire-level paths into a RouteConfiguration that can hold map fields.
#[derive(Clone, Copy)]
enum Level {
    RouteConfiguration,
    VirtualHost,
    Route,
}

impl Level {
    /// What to do with a length-delimited field at this level.
    fn action(self, field: u64) -> Action {
        match (self, field) {
            // RouteConfiguration.virtual_hosts
            (Level::RouteConfiguration, 2) => Action::Descend(Level::VirtualHost),
            // VirtualHost.routes
            (Level::VirtualHost, 3) => Action::Descend(Level::Route),
            // VirtualHost.typed_per_filter_config, Route.typed_per_filter_config
            (Level::VirtualHost, 15) | (Level::Route, 13) => Action::SortEntries,
            _ => Action::Keep,
        }
    }
}

enum Action {
    Keep,
    Descend(Level),
    SortEntries,
}

/// Canonical bytes of an encoded `RouteConfiguration`; input that does not parse as
/// protobuf wire format is returned unchanged.
pub fn route_configuration(bytes: Vec<u8>) -> Vec<u8> {
    match rewrite(&bytes, Level::RouteConfiguration) {
        Some(out) => out,
        None => bytes,
    }
}

fn rewrite(msg: &[u8], level: Level) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(msg.len());
    // Sorted map fields: where their first entry was, and every entry's bytes.
    let mut groups: Vec<(u64, usize, Vec<Vec<u8>>)> = Vec::new();
    let mut i = 0;
    while i < msg.len() {
        let start = i;
        let key = varint(msg, &mut i)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(msg, &mut i)?;
            }
            1 => i = i.checked_add(8)?,
            5 => i = i.checked_add(4)?,
            2 => {
                let len = usize::try_from(varint(msg, &mut i)?).ok()?;
                let body_start = i;
                i = i.checked_add(len)?;
                let body = msg.get(body_start..i)?;
                match level.action(field) {
                    Action::Keep => {}
                    Action::Descend(inner) => {
                        let inner = rewrite(body, inner)?;
                        put_varint(&mut out, key);
                        put_varint(&mut out, inner.len() as u64);
                        out.extend_from_slice(&inner);
                        continue;
                    }
                    Action::SortEntries => {
                        let entry = msg.get(start..i)?.to_vec();
                        match groups.iter_mut().find(|(f, _, _)| *f == field) {
                            Some((_, _, entries)) => entries.push(entry),
                            None => groups.push((field, out.len(), vec![entry])),
                        }
                        continue;
                    }
                }
            }
            _ => return None,
        }
        out.extend_from_slice(msg.get(start..i)?);
    }
    if i != msg.len() {
        return None;
    }
    // Insert each group at its first entry's position, last position first so that earlier
    // offsets stay valid.
    groups.sort_by_key(|(_, at, _)| std::cmp::Reverse(*at));
    for (_, at, mut entries) in groups {
        entries.sort();
        let joined: Vec<u8> = entries.concat();
        out.splice(at..at, joined);
    }
    Some(out)
}

fn varint(buf: &[u8], i: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*i)?;
        *i += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn config() -> RouteConfiguration {
        let mut route = Route {
            name: "r".to_string(),
            ..Default::default()
        };
        for (k, v) in [
            ("envoy.filters.http.fault", 1u8),
            ("envoy.filters.http.cors", 2),
            ("x", 3),
        ] {
            route.typed_per_filter_config.insert(
                k.to_string(),
                Any {
                    type_url: format!("t/{k}"),
                    value: vec![v; 3],
                },
            );
        }
        let mut vh = VirtualHost {
            name: "vh".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![route.clone(), route],
            ..Default::default()
        };
        vh.typed_per_filter_config = vh.routes[0].typed_per_filter_config.clone();
        RouteConfiguration {
            name: "80".to_string(),
            virtual_hosts: vec![vh.clone(), vh],
            ..Default::default()
        }
    }

    #[test]
    fn equal_configs_encode_to_equal_bytes_that_decode_to_the_same_config() {
        let first = route_configuration(config().encode_to_vec());
        let mut raw_differs = false;
        for _ in 0..50 {
            // Each clone of a HashMap gets a new random order; canonical bytes do not move.
            let c = config();
            raw_differs |= c.encode_to_vec() != config().encode_to_vec();
            assert_eq!(route_configuration(c.encode_to_vec()), first);
        }
        assert!(raw_differs, "prost's map order should vary between maps");
        assert_eq!(
            RouteConfiguration::decode(first.as_slice()).ok(),
            Some(config())
        );
    }

    #[test]
    fn garbage_is_left_alone() {
        assert_eq!(route_configuration(vec![0xff, 0xff]), vec![0xff, 0xff]);
    }
}
