//! Listeners as the proxy uses them: address, listener filters, filter chains with their
//! match, and the one terminal network filter each chain runs (HTTP connection manager or
//! TCP proxy). Filters the proxy does not know are skipped when optional and refused when
//! required, naming the filter.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, CidrRange};
use envoy_types::pb::envoy::config::listener::v3 as lpb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::matcher::duration;
use super::route::RouteConfig;
use super::ConfigError;

pub const HCM: &str = "envoy.filters.network.http_connection_manager";
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
pub const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
const ROUTER: &str = "envoy.filters.http.router";
/// Envoy's RBAC HTTP filter: enforced (config/rbac.rs, http/rbac.rs).
pub const RBAC_FILTER: &str = "envoy.filters.http.rbac";
/// Envoy's RBAC network filter, enforced per connection.
/// Envoy's JWT authentication HTTP filter (config/jwt.rs, http/jwt.rs).
pub const JWT_AUTHN_FILTER: &str = "envoy.filters.http.jwt_authn";
pub const NETWORK_RBAC_FILTER: &str = "envoy.filters.network.rbac";
/// Envoy's external authorization network filter (config/ext_authz/network.rs).
pub const NETWORK_EXT_AUTHZ_FILTER: &str = "envoy.filters.network.ext_authz";
/// Envoy's external authorization HTTP filter (config/ext_authz.rs, http/ext_authz.rs).
pub const EXT_AUTHZ_FILTER: &str = "envoy.filters.http.ext_authz";

const KNOWN_HTTP_FILTERS: [&str; 3] = [
    ROUTER,
    super::route::FAULT_FILTER,
    super::route::CORS_FILTER,
];

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub bind_to_port: bool,
    pub use_original_dst: bool,
    /// The `original_dst` listener filter: the connection's destination is the one before
    /// iptables redirected it (chains match on it), without handing the connection on.
    pub original_dst_filter: bool,
    pub tls_inspector: bool,
    pub http_inspector: bool,
    pub chains: Vec<FilterChain>,
    pub default_chain: Option<FilterChain>,
}

#[derive(Debug, Clone, Default)]
pub struct ChainMatch {
    pub destination_port: Option<u16>,
    pub prefix_ranges: Vec<(IpAddr, u8)>,
    pub server_names: Vec<String>,
    pub transport_protocol: Option<String>,
    pub application_protocols: Vec<String>,
    pub source_prefix_ranges: Vec<(IpAddr, u8)>,
    pub source_ports: Vec<u16>,
}

#[derive(Debug, Clone)]
pub struct FilterChain {
    pub name: String,
    pub matcher: ChainMatch,
    pub filter: NetworkFilter,
    /// TLS termination (`transport_socket`), when the chain has it.
    pub tls: Option<Arc<super::tls::DownstreamTls>>,
    /// `envoy.filters.network.rbac` before the terminal filter: checked once per
    /// connection, before any byte is forwarded.
    pub rbac: Vec<Arc<super::rbac::RbacFilter>>,
    /// `envoy.filters.network.ext_authz` filters, each with how many of [`Self::rbac`]
    /// come before it: one check per connection, after those RBAC filters.
    pub ext_authz: Vec<(usize, Arc<super::ext_authz::NetworkExtAuthz>)>,
}

#[derive(Debug, Clone)]
pub enum NetworkFilter {
    Http(Arc<HttpManager>),
    Tcp(Arc<TcpRoute>),
}

#[derive(Debug, Clone)]
pub enum Routes {
    Rds(String),
    Inline(Arc<RouteConfig>),
}

#[derive(Debug, Clone)]
pub struct HttpManager {
    pub stat_prefix: String,
    pub routes: Routes,
    pub use_remote_address: bool,
    pub skip_xff_append: bool,
    pub xff_num_trusted_hops: u32,
    /// `internal_address_config.cidr_ranges`: peers that are not the edge. Empty (Envoy's
    /// default since `explicit_internal_address_config`): every peer is external.
    pub internal_addresses: Vec<ipnet::IpNet>,
    pub fault: bool,
    pub cors: bool,
    pub max_request_headers_kb: u32,
    pub stream_idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.idle_timeout`: how long a downstream connection may
    /// sit without a request before it is closed; Envoy's default is 1 hour, `0s` turns
    /// it off (`None`).
    pub idle_timeout: Option<Duration>,
    /// Upgrade types allowed (`websocket`, lower-cased), from `upgrade_configs`.
    pub upgrades: Vec<String>,
    /// `normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`.
    pub path: crate::http::path::PathOptions,
    /// `forward_client_cert_details` and `set_current_client_cert_details`.
    pub xfcc: Xfcc,
    /// `envoy.filters.http.jwt_authn`, which runs before the RBAC filters.
    pub jwt: Option<Arc<super::jwt::JwtAuthn>>,
    /// `envoy.filters.http.rbac` filters, in filter order (each must allow).
    pub rbac: Vec<Arc<super::rbac::RbacFilter>>,
    /// `envoy.filters.http.ext_authz` filters, each with how many of [`Self::rbac`] come
    /// before it, so the request runs them all in filter order.
    pub ext_authz: Vec<(usize, Arc<super::ext_authz::ExtAuthz>)>,
}

/// What the manager does with `x-forwarded-client-cert` ([`crate::http::xfcc`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xfcc {
    pub mode: XfccMode,
    pub subject: bool,
    pub cert: bool,
    pub chain: bool,
    pub dns: bool,
    pub uri: bool,
}

/// Envoy's `ForwardClientCertDetails`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XfccMode {
    #[default]
    Sanitize,
    ForwardOnly,
    AppendForward,
    SanitizeSet,
    AlwaysForwardOnly,
}

fn xfcc(h: &HttpConnectionManager) -> Xfcc {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::ForwardClientCertDetails as F;
    let mode = match F::try_from(h.forward_client_cert_details).unwrap_or(F::Sanitize) {
        F::Sanitize => XfccMode::Sanitize,
        F::ForwardOnly => XfccMode::ForwardOnly,
        F::AppendForward => XfccMode::AppendForward,
        F::SanitizeSet => XfccMode::SanitizeSet,
        F::AlwaysForwardOnly => XfccMode::AlwaysForwardOnly,
    };
    let d = h.set_current_client_cert_details.unwrap_or_default();
    Xfcc {
        mode,
        subject: d.subject.is_some_and(|b| b.value),
        cert: d.cert,
        chain: d.chain,
        dns: d.dns,
        uri: d.uri,
    }
}

#[derive(Debug, Clone)]
pub struct TcpRoute {
    pub stat_prefix: String,
    /// (cluster, weight); one entry with weight 1 for a single cluster.
    pub clusters: Vec<(String, u32)>,
    pub idle_timeout: Option<Duration>,
}

pub fn socket_addr(a: Option<&Address>) -> Option<SocketAddr> {
    match a?.address.as_ref()? {
        address::Address::SocketAddress(s) => {
            let port = match s.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(p).ok()?,
                _ => return None,
            };
            let ip: IpAddr = s.address.parse().ok()?;
            Some(SocketAddr::new(ip, port))
        }
        _ => None,
    }
}

fn cidr(c: &CidrRange, what: &dyn Fn() -> String) -> Result<(IpAddr, u8), ConfigError> {
    let ip: IpAddr = c.address_prefix.parse().map_err(|_| ConfigError::Invalid {
        what: what(),
        why: format!("prefix range {:?} is not an IP address", c.address_prefix),
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = c
        .prefix_len
        .as_ref()
        .map_or(max, |v| v.value.min(u32::from(max)) as u8);
    Ok((ip, len))
}

fn decode<M: Message + Default>(
    any: Option<&Any>,
    what: &dyn Fn() -> String,
) -> Result<M, ConfigError> {
    let Some(any) = any else {
        return Ok(M::default());
    };
    M::decode(any.value.as_slice()).map_err(|e| ConfigError::Invalid {
        what: what(),
        why: format!("{} does not decode: {e}", any.type_url),
    })
}

impl Listener {
    pub fn from_proto(l: &lpb::Listener) -> Result<Self, ConfigError> {
        let what = || format!("listener {:?}", l.name);
        let address = socket_addr(l.address.as_ref()).ok_or_else(|| ConfigError::Invalid {
            what: what(),
            why: "address is not an IP socket address".into(),
        })?;
        let (mut tls_inspector, mut http_inspector, mut original_dst_filter) =
            (false, false, false);
        for f in &l.listener_filters {
            match f.name.as_str() {
                ORIGINAL_DST => original_dst_filter = true,
                TLS_INSPECTOR => tls_inspector = true,
                HTTP_INSPECTOR => http_inspector = true,
                other => {
                    return Err(ConfigError::Unsupported {
                        what: what(),
                        feature: format!("listener filter {other:?} is required and not supported"),
                    })
                }
            }
        }
        let chains = l
            .filter_chains
            .iter()
            .enumerate()
            .map(|(i, c)| FilterChain::from_proto(c, &|| format!("{}: filter chain {i}", what())))
            .collect::<Result<_, _>>()?;
        let default_chain = l
            .default_filter_chain
            .as_ref()
            .map(|c| FilterChain::from_proto(c, &|| format!("{}: default filter chain", what())))
            .transpose()?;
        Ok(Listener {
            name: l.name.clone(),
            address,
            bind_to_port: l.bind_to_port.as_ref().is_none_or(|b| b.value),
            use_original_dst: l.use_original_dst.as_ref().is_some_and(|b| b.value),
            original_dst_filter,
            tls_inspector,
            http_inspector,
            chains,
            default_chain,
        })
    }

    /// The SDS secret names this listener's chains use.
    pub fn sds_names(&self) -> impl Iterator<Item = &str> {
        self.chains
            .iter()
            .chain(self.default_chain.iter())
            .filter_map(|c| c.tls.as_deref())
            .flat_map(|t| t.sds_names())
    }

    /// The RDS names this listener's chains ask for.
    pub fn rds_names(&self) -> impl Iterator<Item = &str> {
        self.chains
            .iter()
            .chain(self.default_chain.iter())
            .filter_map(|c| match &c.filter {
                NetworkFilter::Http(h) => match &h.routes {
                    Routes::Rds(n) => Some(n.as_str()),
                    Routes::Inline(_) => None,
                },
                NetworkFilter::Tcp(_) => None,
            })
    }
}

impl FilterChain {
    fn from_proto(c: &lpb::FilterChain, what: &dyn Fn() -> String) -> Result<Self, ConfigError> {
        let tls = match &c.transport_socket {
            None => None,
            Some(ts) => {
                let any = match &ts.config_type {
                    Some(envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(a)) => a.clone(),
                    None => Default::default(),
                };
                let what_ts = || format!("{}: transport_socket", what());
                Some(Arc::new(super::tls::downstream(&any, &ts.name, &what_ts)?))
            }
        };
        let m = c.filter_chain_match.clone().unwrap_or_default();
        let matcher = ChainMatch {
            destination_port: m.destination_port.and_then(|p| u16::try_from(p.value).ok()),
            prefix_ranges: m
                .prefix_ranges
                .iter()
                .map(|r| cidr(r, what))
                .collect::<Result<_, _>>()?,
            server_names: m
                .server_names
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            transport_protocol: (!m.transport_protocol.is_empty())
                .then(|| m.transport_protocol.clone()),
            application_protocols: m.application_protocols.clone(),
            source_prefix_ranges: m
                .source_prefix_ranges
                .iter()
                .map(|r| cidr(r, what))
                .collect::<Result<_, _>>()?,
            source_ports: m
                .source_ports
                .iter()
                .filter_map(|p| u16::try_from(*p).ok())
                .collect(),
        };
        let mut terminal = None;
        let mut rbac = Vec::new();
        let mut ext_authz = Vec::new();
        for f in &c.filters {
            let fwhat = || format!("{}: network filter {:?}", what(), f.name);
            let any = match &f.config_type {
                Some(lpb::filter::ConfigType::TypedConfig(a)) => Some(a),
                _ => None,
            };
            if f.name == NETWORK_RBAC_FILTER {
                rbac.push(Arc::new(super::rbac::RbacFilter::from_network_proto(
                    &decode(any, &fwhat)?,
                    &fwhat,
                )?));
                continue;
            }
            if f.name == NETWORK_EXT_AUTHZ_FILTER {
                ext_authz.push((
                    rbac.len(),
                    Arc::new(super::ext_authz::NetworkExtAuthz::from_proto(
                        &decode(any, &fwhat)?,
                        &fwhat,
                    )?),
                ));
                continue;
            }
            let filter = match f.name.as_str() {
                HCM => NetworkFilter::Http(Arc::new(http_manager(&decode(any, &fwhat)?, &fwhat)?)),
                TCP_PROXY => {
                    NetworkFilter::Tcp(Arc::new(tcp_route(&decode(any, &fwhat)?, &fwhat)?))
                }
                other => {
                    return Err(ConfigError::Unsupported {
                        what: what(),
                        feature: format!("network filter {other:?} is not supported"),
                    })
                }
            };
            terminal = Some(filter);
        }
        let filter = terminal.ok_or_else(|| ConfigError::Invalid {
            what: what(),
            why: "no http_connection_manager or tcp_proxy filter".into(),
        })?;
        Ok(FilterChain {
            name: c.name.clone(),
            matcher,
            filter,
            tls,
            rbac,
            ext_authz,
        })
    }
}

fn http_manager(
    h: &HttpConnectionManager,
    what: &dyn Fn() -> String,
) -> Result<HttpManager, ConfigError> {
    let routes = match &h.route_specifier {
        Some(RouteSpecifier::Rds(r)) => Routes::Rds(r.route_config_name.clone()),
        Some(RouteSpecifier::RouteConfig(rc)) => {
            Routes::Inline(Arc::new(RouteConfig::from_proto(rc)?))
        }
        _ => {
            return Err(ConfigError::Unsupported {
                what: what(),
                feature: "route specifier other than rds or route_config".into(),
            })
        }
    };
    let (mut fault, mut cors) = (false, false);
    let mut rbac = Vec::new();
    let mut jwt = None;
    let mut ext_authz = Vec::new();
    for f in &h.http_filters {
        let optional = f.is_optional
            || matches!(f.config_type, Some(http_filter::ConfigType::ConfigDiscovery(_)) if false);
        match f.name.as_str() {
            n if n == super::route::FAULT_FILTER => fault = true,
            n if n == super::route::CORS_FILTER => cors = true,
            RBAC_FILTER => {
                let what_f = || format!("{}: http filter {RBAC_FILTER}", what());
                let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                    return Err(ConfigError::Invalid {
                        what: what_f(),
                        why: "no typed_config".into(),
                    });
                };
                let p = envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac::decode(
                    any.value.as_slice(),
                )
                .map_err(|e| ConfigError::Invalid {
                    what: what_f(),
                    why: format!("does not decode: {e}"),
                })?;
                rbac.push(Arc::new(super::rbac::RbacFilter::from_proto(&p, &what_f)?));
            }
            JWT_AUTHN_FILTER => {
                let what_f = || format!("{}: http filter {JWT_AUTHN_FILTER}", what());
                // RBAC reads what jwt_authn verified: istiod always puts it first, and the
                // proxy evaluates it first.
                if !rbac.is_empty() || !ext_authz.is_empty() || jwt.is_some() {
                    return Err(ConfigError::Unsupported {
                        what: what_f(),
                        feature: "jwt_authn after an RBAC or ext_authz filter, or twice".into(),
                    });
                }
                let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                    return Err(ConfigError::Invalid {
                        what: what_f(),
                        why: "no typed_config".into(),
                    });
                };
                let p = envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication::decode(
                    any.value.as_slice(),
                )
                .map_err(|e| ConfigError::Invalid {
                    what: what_f(),
                    why: format!("does not decode: {e}"),
                })?;
                jwt = Some(Arc::new(super::jwt::JwtAuthn::from_proto(&p, &what_f)?));
            }
            EXT_AUTHZ_FILTER => {
                let what_f = || format!("{}: http filter {EXT_AUTHZ_FILTER}", what());
                let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                    return Err(ConfigError::Invalid {
                        what: what_f(),
                        why: "no typed_config".into(),
                    });
                };
                let p = envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::ExtAuthz::decode(
                    any.value.as_slice(),
                )
                .map_err(|e| ConfigError::Invalid {
                    what: what_f(),
                    why: format!("does not decode: {e}"),
                })?;
                ext_authz.push((
                    rbac.len(),
                    Arc::new(super::ext_authz::ExtAuthz::from_proto(&p, &what_f)?),
                ));
            }
            n if KNOWN_HTTP_FILTERS.contains(&n) => {}
            _ if optional => {}
            other => {
                return Err(ConfigError::Unsupported {
                    what: what(),
                    feature: format!("http filter {other:?} is required and not supported"),
                })
            }
        }
    }
    Ok(HttpManager {
        stat_prefix: h.stat_prefix.clone(),
        routes,
        use_remote_address: h.use_remote_address.as_ref().is_some_and(|b| b.value),
        skip_xff_append: h.skip_xff_append,
        xff_num_trusted_hops: h.xff_num_trusted_hops,
        internal_addresses: internal_addresses(h, &what)?,
        fault,
        cors,
        max_request_headers_kb: h.max_request_headers_kb.as_ref().map_or(60, |v| v.value),
        stream_idle_timeout: h.stream_idle_timeout.as_ref().and_then(duration),
        idle_timeout: idle_timeout(h),
        upgrades: h
            .upgrade_configs
            .iter()
            .filter(|u| u.enabled.as_ref().is_none_or(|b| b.value))
            .map(|u| u.upgrade_type.to_ascii_lowercase())
            .collect(),
        path: path_options(h),
        xfcc: xfcc(h),
        jwt,
        rbac,
        ext_authz,
    })
}

fn internal_addresses(
    h: &HttpConnectionManager,
    what: &dyn Fn() -> String,
) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let Some(c) = &h.internal_address_config else {
        return Ok(Vec::new());
    };
    c.cidr_ranges
        .iter()
        .map(|r| {
            let len = r.prefix_len.as_ref().map_or(0, |l| l.value);
            r.address_prefix
                .parse::<std::net::IpAddr>()
                .ok()
                .and_then(|ip| ipnet::IpNet::new(ip, u8::try_from(len).ok()?).ok())
                .ok_or_else(|| ConfigError::Invalid {
                    what: what(),
                    why: format!(
                        "internal_address_config.cidr_ranges: {}/{len} is not an address range",
                        r.address_prefix
                    ),
                })
        })
        .collect()
}

/// The connection manager's idle timeout: Envoy's one hour unless the config sets one; an
/// explicit zero turns it off.
fn idle_timeout(h: &HttpConnectionManager) -> Option<Duration> {
    match h
        .common_http_protocol_options
        .as_ref()
        .and_then(|o| o.idle_timeout.as_ref())
    {
        None => Some(DEFAULT_IDLE_TIMEOUT),
        Some(d) => duration(d).filter(|d| !d.is_zero()),
    }
}

/// Envoy's `idle_timeout` when `common_http_protocol_options` does not set one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

fn path_options(h: &HttpConnectionManager) -> crate::http::path::PathOptions {
    use crate::http::path::{EscapedSlashes, PathOptions};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::PathWithEscapedSlashesAction as A;
    PathOptions {
        normalize: h.normalize_path.as_ref().is_some_and(|b| b.value),
        merge_slashes: h.merge_slashes,
        escaped_slashes: match A::try_from(h.path_with_escaped_slashes_action) {
            Ok(A::RejectRequest) => EscapedSlashes::Reject,
            Ok(A::UnescapeAndRedirect) => EscapedSlashes::UnescapeAndRedirect,
            Ok(A::UnescapeAndForward) => EscapedSlashes::UnescapeAndForward,
            _ => EscapedSlashes::Keep,
        },
    }
}

fn tcp_route(t: &TcpProxy, what: &dyn Fn() -> String) -> Result<TcpRoute, ConfigError> {
    let clusters = match &t.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 1)],
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight))
            .collect(),
        None => {
            return Err(ConfigError::Invalid {
                what: what(),
                why: "tcp_proxy names no cluster".into(),
            })
        }
    };
    Ok(TcpRoute {
        stat_prefix: t.stat_prefix.clone(),
        clusters,
        idle_timeout: t
            .idle_timeout
            .as_ref()
            .and_then(duration)
            .filter(|d| !d.is_zero()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions;

    fn with_idle(idle: Option<i64>) -> HttpConnectionManager {
        HttpConnectionManager {
            common_http_protocol_options: idle.map(|seconds| HttpProtocolOptions {
                idle_timeout: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_idle_timeout_is_envoys_hour_unless_set_and_zero_turns_it_off() {
        assert_eq!(idle_timeout(&with_idle(None)), Some(DEFAULT_IDLE_TIMEOUT));
        assert_eq!(
            idle_timeout(&with_idle(Some(30))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(idle_timeout(&with_idle(Some(0))), None);
        assert_eq!(
            idle_timeout(&with_idle(Some(-1))),
            None,
            "negative: invalid, off"
        );
    }
}
