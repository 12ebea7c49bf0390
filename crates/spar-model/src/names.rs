//! Name rules shared by validation: DNS names, wildcard hosts, `namespace/host`,
//! Kubernetes label keys and values, HTTP header names, IP addresses and CIDRs.

use std::net::IpAddr;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DOMAIN_MAX: usize = 255;

/// `[a-z0-9A-Z]([-a-z0-9A-Z]*[a-z0-9A-Z])?`, at most 63 characters (Istio allows upper case in hosts).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= DNS1123_LABEL_MAX
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// A Kubernetes object name: lower-case DNS-1123 label.
pub fn is_k8s_label_name(s: &str) -> bool {
    is_dns1123_label(s) && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// A Kubernetes DNS-1123 subdomain (most object names): lower-case labels joined by dots.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= DNS1123_SUBDOMAIN_MAX && s.split('.').all(is_k8s_label_name)
}

/// Validates a DNS name whose first label may be a wildcard (`*`, `*.x`, `*x`, `*-x`),
/// as Istio does for hosts. Returns why it is not valid.
pub fn check_wildcard_domain(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if host.len() > DOMAIN_MAX {
        return Err(format!("domain name {host:?} too long (max {DOMAIN_MAX})"));
    }
    let (first, rest) = match host.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (host, None),
    };
    let first_ok = first == "*"
        || is_dns1123_label(first)
        || first
            .strip_prefix("*-")
            .or_else(|| first.strip_prefix('*'))
            .is_some_and(is_dns1123_label);
    if !first_ok {
        return Err(format!(
            "domain name {host:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => check_dns1123_labels(host, r),
        None => Ok(()),
    }
}

/// Validates a DNS name without wildcards (a trailing dot is allowed).
pub fn check_fqdn(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if host.len() > DOMAIN_MAX {
        return Err(format!("domain name {host:?} too long (max {DOMAIN_MAX})"));
    }
    check_dns1123_labels(host, host)
}

fn check_dns1123_labels(whole: &str, labels: &str) -> Result<(), String> {
    let labels = labels.strip_suffix('.').unwrap_or(labels);
    for label in labels.split('.') {
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {whole:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// `namespace/host` as Gateway servers and Sidecar egress use it. The namespace part
/// is `*`, `.`, `~` (Sidecar only) or a namespace name; the host part a wildcard domain.
/// `require_namespace` is true for Sidecar, which insists on the slash.
pub fn check_namespaced_host(
    value: &str,
    require_namespace: bool,
    allow_tilde: bool,
) -> Result<(), String> {
    let parts: Vec<&str> = value.split('/').collect();
    let host = match parts.as_slice() {
        [host] if !require_namespace => *host,
        [_] => return Err(format!("host {value:?} must be of form namespace/dnsName")),
        [ns, host] => {
            let ns_ok =
                *ns == "*" || *ns == "." || (allow_tilde && *ns == "~") || is_k8s_label_name(ns);
            if !ns_ok {
                return Err(format!(
                    "host {value:?}: namespace part {ns:?} must be *, ., or a namespace name"
                ));
            }
            *host
        }
        _ => return Err(format!("host {value:?} must be of form namespace/dnsName")),
    };
    if host == "*" {
        return Ok(());
    }
    check_wildcard_domain(host)
}

/// A Kubernetes label key: optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 characters from `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns1123_subdomain(p) {
            return Err(format!("label key {key:?}: prefix must be a DNS subdomain"));
        }
    }
    if !is_label_value(name) || name.is_empty() {
        return Err(format!(
            "label key {key:?} invalid: name part must be 1-63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric"
        ));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or up to 63 of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
pub fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
}

/// An HTTP header name (RFC 7230 token). Pseudo-headers like `:authority` are refused.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// An IP address or a CIDR block; returns why not.
pub fn check_ip_or_cidr(value: &str) -> Result<(), String> {
    if value.contains('/') {
        value
            .parse::<ipnet::IpNet>()
            .map(|_| ())
            .map_err(|_| format!("{value:?} is not a valid CIDR block"))
    } else {
        value
            .parse::<IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("{value:?} is not a valid IP address"))
    }
}

pub fn is_ip(value: &str) -> bool {
    value.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_domains() {
        for ok in [
            "reviews",
            "reviews.default.svc.cluster.local",
            "*",
            "*.example.com",
            "*x",
            "*-x.com",
            "A.B",
        ] {
            assert!(check_wildcard_domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "foo.*.com",
            "foo*",
            "a..b",
            "-a.com",
            "a_b.com",
            "*.",
            &"a".repeat(64),
        ] {
            assert!(check_wildcard_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaced_hosts() {
        assert!(check_namespaced_host("ns/foo.com", true, true).is_ok());
        assert!(check_namespaced_host("./*", true, true).is_ok());
        assert!(check_namespaced_host("*/*", true, true).is_ok());
        assert!(check_namespaced_host("~/*", true, true).is_ok());
        assert!(check_namespaced_host("~/*", false, false).is_err());
        assert!(check_namespaced_host("foo.com", true, true).is_err());
        assert!(check_namespaced_host("foo.com", false, false).is_ok());
        assert!(check_namespaced_host("a/b/c", false, false).is_err());
        assert!(check_namespaced_host("Bad_NS/foo", false, false).is_err());
    }

    #[test]
    fn labels_headers_ips() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("istio.io/rev").is_ok());
        assert!(check_label_key("").is_err());
        assert!(check_label_key("bad key").is_err());
        assert!(is_label_value("") && is_label_value("v1.2_3") && !is_label_value("-x"));
        assert!(
            is_header_name("x-user") && !is_header_name(":authority") && !is_header_name("a b")
        );
        assert!(check_ip_or_cidr("10.0.0.0/8").is_ok() && check_ip_or_cidr("::1").is_ok());
        assert!(check_ip_or_cidr("1.2.3.4/99").is_err() && check_ip_or_cidr("x").is_err());
    }
}
