//! Matchers shared by routes and listeners: Envoy's `StringMatcher`, fractions of a
//! million, durations. Built once from the protos; evaluated on every request.

use std::time::Duration;

use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use regex::Regex;

use super::ConfigError;

/// What a string must look like.
#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// Anchored at both ends, as Envoy's RE2 full match.
    Regex(Regex),
}

/// Envoy's `StringMatcher`: a pattern and whether case is ignored (not for regexes).
#[derive(Debug, Clone)]
pub struct StringMatch {
    pub pattern: StrMatch,
    pub ignore_case: bool,
}

/// Compiles `re` so that it must match the whole input (Envoy's `safe_regex` semantics).
pub fn full_regex(re: &str, what: &dyn Fn() -> String) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| ConfigError::Invalid {
        what: what(),
        why: format!("regex {re:?} does not compile: {e}"),
    })
}

impl StringMatch {
    pub fn from_proto(m: &StringMatcher, what: &dyn Fn() -> String) -> Result<Self, ConfigError> {
        let lower = |s: &str| {
            if m.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        let pattern = match &m.match_pattern {
            Some(MatchPattern::Exact(s)) => StrMatch::Exact(lower(s)),
            Some(MatchPattern::Prefix(s)) => StrMatch::Prefix(lower(s)),
            Some(MatchPattern::Suffix(s)) => StrMatch::Suffix(lower(s)),
            Some(MatchPattern::Contains(s)) => StrMatch::Contains(lower(s)),
            Some(MatchPattern::SafeRegex(r)) => StrMatch::Regex(full_regex(&r.regex, what)?),
            Some(MatchPattern::Custom(c)) => {
                return Err(ConfigError::Unsupported {
                    what: what(),
                    feature: format!("custom string matcher {:?}", c.name),
                })
            }
            None => {
                return Err(ConfigError::Invalid {
                    what: what(),
                    why: "string matcher has no pattern".to_string(),
                })
            }
        };
        Ok(StringMatch {
            pattern,
            ignore_case: m.ignore_case,
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        if let StrMatch::Regex(re) = &self.pattern {
            return re.is_match(value);
        }
        let owned;
        let v = if self.ignore_case {
            owned = value.to_ascii_lowercase();
            owned.as_str()
        } else {
            value
        };
        match &self.pattern {
            StrMatch::Exact(s) => v == s,
            StrMatch::Prefix(s) => v.starts_with(s.as_str()),
            StrMatch::Suffix(s) => v.ends_with(s.as_str()),
            StrMatch::Contains(s) => v.contains(s.as_str()),
            StrMatch::Regex(_) => false,
        }
    }
}

/// A probability as parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMillion(pub u32);

impl PerMillion {
    pub const ALL: PerMillion = PerMillion(1_000_000);

    pub fn from_proto(f: &FractionalPercent) -> PerMillion {
        let scale = match DenominatorType::try_from(f.denominator) {
            Ok(DenominatorType::Hundred) => 10_000u64,
            Ok(DenominatorType::TenThousand) => 100,
            _ => 1,
        };
        PerMillion((u64::from(f.numerator) * scale).min(1_000_000) as u32)
    }

    /// Whether a fresh random draw falls inside the fraction.
    pub fn sample(self) -> bool {
        self.0 >= 1_000_000 || fastrand::u32(0..1_000_000) < self.0
    }

    /// Envoy's check against a given random value (`value % 1e6 < numerator`).
    pub fn contains(self, value: u64) -> bool {
        (value % 1_000_000) < u64::from(self.0)
    }
}

/// A protobuf duration; `None` for negative ones.
pub fn duration(d: &envoy_types::pb::google::protobuf::Duration) -> Option<Duration> {
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok()?;
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(p: MatchPattern, ignore_case: bool) -> StringMatch {
        StringMatch::from_proto(
            &StringMatcher {
                match_pattern: Some(p),
                ignore_case,
            },
            &|| "test".to_string(),
        )
        .unwrap()
    }

    #[test]
    fn string_matchers() {
        assert!(sm(MatchPattern::Exact("Abc".into()), true).matches("aBC"));
        assert!(!sm(MatchPattern::Exact("Abc".into()), false).matches("abc"));
        assert!(sm(MatchPattern::Prefix("/a".into()), false).matches("/abc"));
        assert!(sm(MatchPattern::Suffix("bc".into()), false).matches("/abc"));
        assert!(sm(MatchPattern::Contains("b".into()), false).matches("/abc"));
        let re = envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher {
            regex: "a.c".into(),
            ..Default::default()
        };
        let m = sm(MatchPattern::SafeRegex(re), false);
        assert!(m.matches("abc"));
        assert!(!m.matches("xabc"), "regex matches the whole value");
    }

    #[test]
    fn fractions() {
        let f = |n, d: DenominatorType| {
            PerMillion::from_proto(&FractionalPercent {
                numerator: n,
                denominator: d as i32,
            })
        };
        assert_eq!(f(50, DenominatorType::Hundred), PerMillion(500_000));
        assert_eq!(f(5, DenominatorType::TenThousand), PerMillion(500));
        assert!(!f(0, DenominatorType::Million).contains(0));
        assert!(PerMillion::ALL.sample());
        assert!(!PerMillion(0).sample());
    }
}
