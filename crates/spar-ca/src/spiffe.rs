//! SPIFFE IDs in Istio's form, `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! This is the one identity type the CA signs for and the authenticators return: parsing is
//! strict (the SPIFFE ID grammar, then Istio's four path segments), so a value of this type
//! is always something a workload may legitimately hold.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Longest SPIFFE ID the spec allows, in bytes.
const MAX_ID_LEN: usize = 2048;
/// Longest trust domain name the spec allows, in bytes.
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not an Istio SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpiffeIdError {
    #[error("a SPIFFE ID must start with `spiffe://`: {0:?}")]
    WrongScheme(String),
    #[error("the SPIFFE ID {0:?} is longer than the {MAX_ID_LEN} bytes the spec allows")]
    TooLong(String),
    #[error("the SPIFFE ID {0:?} has no trust domain")]
    EmptyTrustDomain(String),
    #[error(
        "trust domain {0:?} is invalid: use lowercase letters, digits, `.`, `-` and `_` \
         (at most {MAX_TRUST_DOMAIN_LEN} bytes)"
    )]
    InvalidTrustDomain(String),
    #[error(
        "path segment {segment:?} of {id:?} is invalid: segments are non-empty, not `.` or `..`, \
         and use letters, digits, `.`, `-` and `_`"
    )]
    InvalidPathSegment { id: String, segment: String },
    #[error(
        "{0:?} is not an Istio workload identity: expected \
         spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"
    )]
    NotIstioForm(String),
}

/// An Istio workload identity: trust domain, namespace and service account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

// === impl SpiffeId ===

impl SpiffeId {
    /// Builds an identity from its parts, checking each against the SPIFFE grammar.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}").parse()
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The same namespace and service account in another trust domain.
    pub fn with_trust_domain(&self, trust_domain: &str) -> Result<Self, SpiffeIdError> {
        Self::new(trust_domain, &self.namespace, &self.service_account)
    }
}

/// Checks a trust domain name against the SPIFFE grammar.
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    let ok = !td.is_empty()
        && td.len() <= MAX_TRUST_DOMAIN_LEN
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SpiffeIdError::InvalidTrustDomain(td.to_string()))
    }
}

fn valid_segment(seg: &str) -> bool {
    !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| SpiffeIdError::WrongScheme(s.to_string()))?;
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(s.to_string()));
        }
        let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
        if td.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain(s.to_string()));
        }
        validate_trust_domain(td)?;
        let segments: Vec<&str> = path.split('/').collect();
        if let Some(bad) = segments.iter().find(|seg| !valid_segment(seg)) {
            if !path.is_empty() {
                return Err(SpiffeIdError::InvalidPathSegment {
                    id: s.to_string(),
                    segment: (*bad).to_string(),
                });
            }
        }
        match segments.as_slice() {
            ["ns", ns, "sa", sa] => Ok(SpiffeId {
                trust_domain: td.to_string(),
                namespace: (*ns).to_string(),
                service_account: (*sa).to_string(),
            }),
            _ => Err(SpiffeIdError::NotIstioForm(s.to_string())),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
            .parse()
            .unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-productpage");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        );
        assert_eq!(
            SpiffeId::new("cluster.local", "default", "bookinfo-productpage").unwrap(),
            id
        );
    }

    #[test]
    fn rejects_bad_ids() {
        type Case = (&'static str, fn(&SpiffeIdError) -> bool);
        let cases: &[Case] = &[
            ("http://cluster.local/ns/a/sa/b", |e| {
                matches!(e, SpiffeIdError::WrongScheme(_))
            }),
            ("SPIFFE://cluster.local/ns/a/sa/b", |e| {
                matches!(e, SpiffeIdError::WrongScheme(_))
            }),
            ("spiffe:///ns/a/sa/b", |e| {
                matches!(e, SpiffeIdError::EmptyTrustDomain(_))
            }),
            ("spiffe://Cluster.local/ns/a/sa/b", |e| {
                matches!(e, SpiffeIdError::InvalidTrustDomain(_))
            }),
            ("spiffe://user@td/ns/a/sa/b", |e| {
                matches!(e, SpiffeIdError::InvalidTrustDomain(_))
            }),
            ("spiffe://td:443/ns/a/sa/b", |e| {
                matches!(e, SpiffeIdError::InvalidTrustDomain(_))
            }),
            ("spiffe://td/ns/a/sa/b/", |e| {
                matches!(e, SpiffeIdError::InvalidPathSegment { .. })
            }),
            ("spiffe://td/ns//sa/b", |e| {
                matches!(e, SpiffeIdError::InvalidPathSegment { .. })
            }),
            ("spiffe://td/ns/../sa/b", |e| {
                matches!(e, SpiffeIdError::InvalidPathSegment { .. })
            }),
            ("spiffe://td/ns/a/sa/b?x=1", |e| {
                matches!(e, SpiffeIdError::InvalidPathSegment { .. })
            }),
            ("spiffe://td/ns/a/sa/b\0", |e| {
                matches!(e, SpiffeIdError::InvalidPathSegment { .. })
            }),
            ("spiffe://td", |e| {
                matches!(e, SpiffeIdError::NotIstioForm(_))
            }),
            ("spiffe://td/workload/x", |e| {
                matches!(e, SpiffeIdError::NotIstioForm(_))
            }),
            ("spiffe://td/ns/a/sa/b/c", |e| {
                matches!(e, SpiffeIdError::NotIstioForm(_))
            }),
        ];
        for (input, want) in cases {
            let err = input.parse::<SpiffeId>().unwrap_err();
            assert!(want(&err), "{input:?}: unexpected error {err:?}");
        }
        let long = format!("spiffe://td/ns/{}/sa/b", "a".repeat(MAX_ID_LEN));
        assert!(matches!(
            long.parse::<SpiffeId>(),
            Err(SpiffeIdError::TooLong(_))
        ));
    }
}
