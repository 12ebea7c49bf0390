//! The small Envoy matchers authorization is made of: string matchers with Istio's `*`
//! prefix/suffix wildcards, CIDR ranges, header and metadata matchers, and RE2 escaping.

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    list_matcher, metadata_matcher, string_matcher, value_matcher, ListMatcher, MetadataMatcher,
    OrMatcher, RegexMatcher, StringMatcher, ValueMatcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::AuthzError;

/// The filter whose dynamic metadata holds verified JWT payloads (see [`super::jwt`]).
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
/// The key under [`JWT_FILTER`] each provider writes its verified payload to.
pub const PAYLOAD_KEY: &str = "payload";

pub fn exact(v: &str) -> StringMatcher {
    pattern(string_matcher::MatchPattern::Exact(v.to_string()))
}

pub fn prefix(v: &str) -> StringMatcher {
    pattern(string_matcher::MatchPattern::Prefix(v.to_string()))
}

pub fn suffix(v: &str) -> StringMatcher {
    pattern(string_matcher::MatchPattern::Suffix(v.to_string()))
}

pub fn regex(re: &str) -> StringMatcher {
    pattern(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
        regex: re.to_string(),
        ..Default::default()
    }))
}

fn pattern(p: string_matcher::MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ignore_case: false,
    }
}

/// Istio's value syntax: `*` (any non-empty value), `abc*` (prefix), `*abc` (suffix), or
/// an exact value.
pub fn istio_value(v: &str) -> StringMatcher {
    if v == "*" {
        regex(".+")
    } else if let Some(p) = v.strip_suffix('*') {
        prefix(p)
    } else if let Some(s) = v.strip_prefix('*') {
        suffix(s)
    } else {
        exact(v)
    }
}

/// Escapes RE2 metacharacters so that `s` matches itself.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An Istio glob (`*` anywhere matches any run of characters) as an RE2 fragment.
pub fn glob(s: &str) -> String {
    s.split('*').map(escape).collect::<Vec<_>>().join(".*")
}

/// `10.0.0.0/8`, `192.168.1.1` or `2001:db8::/32` as a CIDR range.
pub fn cidr(v: &str) -> Result<CidrRange, AuthzError> {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let ip: std::net::IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| AuthzError::BadIpBlock(v.to_string()))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| AuthzError::BadIpBlock(v.to_string()))?,
        None => max,
    };
    Ok(CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    })
}

pub fn port(v: &str) -> Result<u32, AuthzError> {
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| AuthzError::BadPort(v.to_string()))
}

pub fn header(name: &str, m: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)),
        ..Default::default()
    }
}

/// A header value for a rule that *denies*: Envoy joins repeated headers with `,`, so a
/// plain exact match would let `x: a` + `x: admin` through a DENY of `x: admin`. This
/// matches the value as any element of the joined list (stricter, never looser).
pub fn header_value_for_deny(v: &str) -> StringMatcher {
    let inner = if v == "*" {
        return regex(".+");
    } else if let Some(p) = v.strip_suffix('*') {
        format!("{}[^,]*", escape(p))
    } else if let Some(s) = v.strip_prefix('*') {
        format!("[^,]*{}", escape(s))
    } else {
        escape(v)
    };
    regex(&format!("(.*,)?\\s*{inner}\\s*(,.*)?"))
}

/// A matcher on a verified JWT payload: `path` are the claim keys (nested claims give
/// several), the value a string or any element of a list of strings.
pub fn jwt_claim(path: &[&str], value: StringMatcher) -> MetadataMatcher {
    let mut segments = vec![key(PAYLOAD_KEY)];
    segments.extend(path.iter().map(|k| key(k)));
    let string = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(value)),
    };
    let list = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(string.clone()))),
            },
        ))),
    };
    MetadataMatcher {
        filter: JWT_FILTER.to_string(),
        path: segments,
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
                value_matchers: vec![string, list],
            })),
        }),
        invert: false,
    }
}

/// Dynamic metadata `filter` / `key` holding a string matched by `value`.
pub fn metadata(filter: &str, k: &str, value: StringMatcher) -> MetadataMatcher {
    MetadataMatcher {
        filter: filter.to_string(),
        path: vec![key(k)],
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(value)),
        }),
        invert: false,
    }
}

fn key(k: &str) -> metadata_matcher::PathSegment {
    metadata_matcher::PathSegment {
        segment: Some(metadata_matcher::path_segment::Segment::Key(k.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_ports() {
        assert_eq!(cidr("10.0.0.0/8").unwrap().prefix_len.unwrap().value, 8);
        assert_eq!(cidr("1.2.3.4").unwrap().prefix_len.unwrap().value, 32);
        assert_eq!(cidr("2001:db8::/32").unwrap().prefix_len.unwrap().value, 32);
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("example.com").is_err());
        assert_eq!(port("8080").unwrap(), 8080);
        assert!(port("0").is_err() && port("http").is_err());
    }

    #[test]
    fn escapes_and_globs() {
        assert_eq!(escape("a.b*c"), "a\\.b\\*c");
        assert_eq!(glob("test-*"), "test-.*");
    }
}
