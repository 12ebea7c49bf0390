//! Envoy's `MetadataMatcher` on a request's dynamic metadata, for the producers spar proxy
//! has: `envoy.filters.http.jwt_authn`, whose verified JWT payload RBAC matches for Istio's
//! `requestPrincipals` and `request.auth.*` conditions, and `envoy.filters.http.rbac`, whose
//! shadow rules' result ext_authz's `filter_enabled_metadata` reads (Istio's CUSTOM action).
//!
//! The payload is kept as the JSON it was signed as; Envoy converts it to a protobuf
//! `Struct`, which changes nothing a matcher can see except that every number is a double.

use envoy_types::pb::envoy::r#type::matcher::v3::{
    list_matcher, metadata_matcher::path_segment::Segment, value_matcher, DoubleMatcher,
    MetadataMatcher, ValueMatcher,
};
use serde_json::Value;

use super::matcher::StringMatch;
use super::ConfigError;

/// The filter whose metadata spar proxy produces (a verified JWT payload per key).
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// The RBAC filter's namespace: `<shadow_rules_stat_prefix>shadow_effective_policy_id` and
/// `<prefix>shadow_engine_result` when shadow rules ran.
pub const RBAC: &str = "envoy.filters.http.rbac";
/// The network RBAC filter's namespace, on a connection (the same keys as [`RBAC`]).
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";

/// A path into one filter's metadata and what must be found there.
#[derive(Debug, Clone)]
pub struct MetadataMatch {
    /// The filter (metadata namespace) the path starts in.
    pub filter: String,
    /// Keys from the filter's namespace down (the first is the provider's
    /// `payload_in_metadata`).
    pub path: Vec<String>,
    pub value: ValueMatch,
    pub invert: bool,
}

/// Envoy's `ValueMatcher`.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Null,
    /// `[start, end)` with a range, else equal.
    Double(DoubleMatch),
    String(StringMatch),
    Bool(bool),
    /// `true`: a value is there (Envoy: `present_match: false` matches nothing).
    Present(bool),
    /// A list with at least one element that matches.
    OneOf(Box<ValueMatch>),
    Or(Vec<ValueMatch>),
}

#[derive(Debug, Clone, Copy)]
pub enum DoubleMatch {
    Exact(f64),
    Range(f64, f64),
}

type Ctx<'a> = &'a dyn Fn() -> String;

impl MetadataMatch {
    /// A matcher on `envoy.filters.http.jwt_authn`'s metadata (RBAC principals).
    pub fn from_proto(m: &MetadataMatcher, what: Ctx<'_>) -> Result<Self, ConfigError> {
        Self::from_proto_on(m, &[JWT_AUTHN], what)
    }

    /// A matcher on the metadata of one of `filters` (refused for any other filter: spar
    /// proxy produces no metadata there, so the matcher could never be right).
    pub fn from_proto_on(
        m: &MetadataMatcher,
        filters: &[&str],
        what: Ctx<'_>,
    ) -> Result<Self, ConfigError> {
        if !filters.contains(&m.filter.as_str()) {
            return Err(ConfigError::Unsupported {
                what: what(),
                feature: format!(
                    "metadata matcher on {:?} (spar proxy has metadata of {} here)",
                    m.filter,
                    filters.join(", ")
                ),
            });
        }
        let path = m
            .path
            .iter()
            .map(|s| match &s.segment {
                Some(Segment::Key(k)) => Ok(k.clone()),
                None => Err(ConfigError::Invalid {
                    what: what(),
                    why: "metadata matcher path segment without a key".into(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if path.is_empty() {
            return Err(ConfigError::Invalid {
                what: what(),
                why: "metadata matcher with an empty path".into(),
            });
        }
        let value = m.value.as_ref().ok_or_else(|| ConfigError::Invalid {
            what: what(),
            why: "metadata matcher without a value".into(),
        })?;
        Ok(MetadataMatch {
            filter: m.filter.clone(),
            path,
            value: ValueMatch::from_proto(value, what)?,
            invert: m.invert,
        })
    }

    /// Matches against the namespace of [`Self::filter`]: for jwt_authn the verified
    /// payloads by `payload_in_metadata` key (`None`: no token was verified, so nothing is
    /// there).
    pub fn matches(&self, metadata: Option<&serde_json::Map<String, Value>>) -> bool {
        let mut keys = self.path.iter();
        let found = keys.next().and_then(|first| {
            let root = metadata?.get(first)?;
            keys.try_fold(root, |v, k| v.as_object()?.get(k))
        });
        self.value.matches(found) != self.invert
    }
}

impl ValueMatch {
    fn from_proto(v: &ValueMatcher, what: Ctx<'_>) -> Result<Self, ConfigError> {
        use value_matcher::MatchPattern as P;
        Ok(match &v.match_pattern {
            Some(P::NullMatch(_)) => ValueMatch::Null,
            Some(P::DoubleMatch(d)) => ValueMatch::Double(double(d, what)?),
            Some(P::StringMatch(s)) => ValueMatch::String(StringMatch::from_proto(s, what)?),
            Some(P::BoolMatch(b)) => ValueMatch::Bool(*b),
            Some(P::PresentMatch(p)) => ValueMatch::Present(*p),
            Some(P::ListMatch(l)) => match &l.match_pattern {
                Some(list_matcher::MatchPattern::OneOf(inner)) => {
                    ValueMatch::OneOf(Box::new(Self::from_proto(inner, what)?))
                }
                None => {
                    return Err(ConfigError::Invalid {
                        what: what(),
                        why: "list matcher without one_of".into(),
                    })
                }
            },
            Some(P::OrMatch(o)) => ValueMatch::Or(
                o.value_matchers
                    .iter()
                    .map(|m| Self::from_proto(m, what))
                    .collect::<Result<_, _>>()?,
            ),
            None => {
                return Err(ConfigError::Invalid {
                    what: what(),
                    why: "value matcher without a pattern".into(),
                })
            }
        })
    }

    /// Envoy's `Matchers::ValueMatcher::match` on a `google.protobuf.Value`.
    pub fn matches(&self, v: Option<&Value>) -> bool {
        match (self, v) {
            (ValueMatch::Present(p), v) => *p && v.is_some(),
            (_, None) => false,
            (ValueMatch::Null, Some(v)) => v.is_null(),
            (ValueMatch::Double(d), Some(Value::Number(n))) => {
                n.as_f64().is_some_and(|x| match d {
                    DoubleMatch::Exact(e) => x == *e,
                    DoubleMatch::Range(s, e) => x >= *s && x < *e,
                })
            }
            (ValueMatch::String(s), Some(Value::String(x))) => s.matches(x),
            (ValueMatch::Bool(b), Some(Value::Bool(x))) => b == x,
            (ValueMatch::OneOf(inner), Some(Value::Array(xs))) => {
                xs.iter().any(|x| inner.matches(Some(x)))
            }
            (ValueMatch::Or(any), v) => any.iter().any(|m| m.matches(v)),
            _ => false,
        }
    }
}

fn double(d: &DoubleMatcher, what: Ctx<'_>) -> Result<DoubleMatch, ConfigError> {
    use envoy_types::pb::envoy::r#type::matcher::v3::double_matcher::MatchPattern as P;
    match &d.match_pattern {
        Some(P::Exact(e)) => Ok(DoubleMatch::Exact(*e)),
        Some(P::Range(r)) => Ok(DoubleMatch::Range(r.start, r.end)),
        None => Err(ConfigError::Invalid {
            what: what(),
            why: "double matcher without a pattern".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::matcher::StrMatch;

    fn s(p: StrMatch) -> ValueMatch {
        ValueMatch::String(StringMatch {
            pattern: p,
            ignore_case: false,
        })
    }

    fn md(json: &str) -> serde_json::Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn paths_walk_nested_claims_and_lists_match_any_element() {
        let m = md(r#"{"payload":{"iss":"a","groups":["x","admin"],"n":{"role":"r"},"age":3}}"#);
        let at = |path: &[&str], value: ValueMatch| MetadataMatch {
            filter: JWT_AUTHN.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            value,
            invert: false,
        };
        let either = |v: &str| {
            ValueMatch::Or(vec![
                s(StrMatch::Exact(v.into())),
                ValueMatch::OneOf(Box::new(s(StrMatch::Exact(v.into())))),
            ])
        };
        assert!(at(&["payload", "iss"], either("a")).matches(Some(&m)));
        assert!(at(&["payload", "groups"], either("admin")).matches(Some(&m)));
        assert!(!at(&["payload", "groups"], either("root")).matches(Some(&m)));
        assert!(at(&["payload", "n", "role"], either("r")).matches(Some(&m)));
        assert!(!at(&["payload", "n", "missing"], either("r")).matches(Some(&m)));
        // A number is not a string.
        assert!(!at(&["payload", "age"], either("3")).matches(Some(&m)));
        assert!(at(
            &["payload", "age"],
            ValueMatch::Double(DoubleMatch::Range(1.0, 4.0))
        )
        .matches(Some(&m)));
        // No verified token: nothing matches, except an inverted matcher.
        assert!(!at(&["payload", "iss"], either("a")).matches(None));
        assert!(at(&["payload", "iss"], ValueMatch::Present(true)).matches(Some(&m)));
        assert!(!at(&["payload", "iss"], ValueMatch::Present(true)).matches(None));
        assert!(!at(&["payload", "iss"], ValueMatch::Present(false)).matches(Some(&m)));
        let mut inv = at(&["payload", "iss"], either("a"));
        inv.invert = true;
        assert!(inv.matches(None) && !inv.matches(Some(&m)));
    }
}
