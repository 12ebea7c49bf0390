//! Port protocols decided like Istio: `appProtocol` first, then the port name's prefix
//! (`http-web`, `grpc`, `tcp-db`, ...), then the Kubernetes `protocol` (UDP); otherwise
//! the proxy detects the protocol from the first bytes.

use crate::model::Protocol;

/// Istio's protocol names, case-insensitive (`HTTP`, `http2`, `GRPC-Web`, `mongo`, ...).
pub fn parse(name: &str) -> Option<Protocol> {
    Some(match name.to_ascii_lowercase().as_str() {
        "http" => Protocol::Http,
        "http2" => Protocol::Http2,
        "grpc" => Protocol::Grpc,
        "grpc-web" => Protocol::GrpcWeb,
        "https" => Protocol::Https,
        "tls" => Protocol::Tls,
        "tcp" => Protocol::Tcp,
        "mongo" => Protocol::Mongo,
        "redis" => Protocol::Redis,
        "mysql" => Protocol::Mysql,
        "udp" => Protocol::Udp,
        _ => return None,
    })
}

/// `appProtocol` values Kubernetes standardised, besides Istio's own names.
fn parse_app_protocol(value: &str) -> Option<Protocol> {
    match value {
        "kubernetes.io/h2c" => Some(Protocol::Http2),
        "kubernetes.io/ws" => Some(Protocol::Http),
        "kubernetes.io/wss" => Some(Protocol::Https),
        _ => parse(value),
    }
}

/// From a port name: `grpc-web` first (its prefix `grpc` would win otherwise), then the
/// part before the first `-`.
pub fn from_port_name(name: &str) -> Option<Protocol> {
    let lower = name.to_ascii_lowercase();
    if lower == "grpc-web" || lower.starts_with("grpc-web-") {
        return Some(Protocol::GrpcWeb);
    }
    let prefix = lower.split('-').next().unwrap_or_default();
    parse(prefix)
}

/// A Kubernetes service port's protocol.
pub fn for_kube_port(name: Option<&str>, app_protocol: Option<&str>, l4: Option<&str>) -> Protocol {
    if l4.is_some_and(|p| p.eq_ignore_ascii_case("udp")) {
        return Protocol::Udp;
    }
    app_protocol
        .and_then(parse_app_protocol)
        .or_else(|| name.and_then(from_port_name))
        .unwrap_or(Protocol::Unsupported)
}

/// A ServiceEntry port's protocol: its `protocol` field, else the name.
pub fn for_entry_port(name: Option<&str>, protocol: Option<&str>) -> Protocol {
    protocol
        .and_then(parse)
        .or_else(|| name.and_then(from_port_name))
        .unwrap_or(Protocol::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocol_wins_over_name() {
        assert_eq!(
            for_kube_port(Some("tcp-x"), Some("http"), None),
            Protocol::Http
        );
        assert_eq!(
            for_kube_port(Some("x"), Some("kubernetes.io/h2c"), None),
            Protocol::Http2
        );
    }

    #[test]
    fn name_prefixes() {
        let cases = [
            ("http", Protocol::Http),
            ("http-web", Protocol::Http),
            ("http2", Protocol::Http2),
            ("grpc", Protocol::Grpc),
            ("grpc-web", Protocol::GrpcWeb),
            ("grpc-foo", Protocol::Grpc),
            ("https-admin", Protocol::Https),
            ("tls", Protocol::Tls),
            ("tcp-db", Protocol::Tcp),
            ("mongo", Protocol::Mongo),
            ("redis-x", Protocol::Redis),
            ("mysql", Protocol::Mysql),
            ("udp-dns", Protocol::Udp),
            ("HTTP-UPPER", Protocol::Http),
        ];
        for (name, want) in cases {
            assert_eq!(for_kube_port(Some(name), None, None), want, "{name}");
        }
        assert_eq!(
            for_kube_port(Some("web"), None, None),
            Protocol::Unsupported
        );
        assert_eq!(for_kube_port(None, None, None), Protocol::Unsupported);
        assert_eq!(
            for_kube_port(Some("http"), None, Some("UDP")),
            Protocol::Udp
        );
    }

    #[test]
    fn service_entry_protocol_field() {
        assert_eq!(for_entry_port(Some("foo"), Some("HTTPS")), Protocol::Https);
        assert_eq!(for_entry_port(Some("tcp-x"), None), Protocol::Tcp);
    }
}
