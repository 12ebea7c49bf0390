//! Clusters and their endpoints as the proxy uses them: discovery type, load-balancing
//! policy, connect timeout, circuit breakers, outlier detection, upstream HTTP/2, and the
//! hosts (from EDS or an inline `load_assignment`).

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster as PbCluster};
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, HealthStatus};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{explicit_http_config::ProtocolConfig, UpstreamProtocolOptions},
    HttpProtocolOptions,
};
use prost::Message;

use std::sync::Arc;

use super::matcher::duration;
use super::tls::{self, UpstreamTls};
use super::ConfigError;

pub const HTTP_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    Eds,
    Static,
    StrictDns,
    LogicalDns,
    OriginalDst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash { min_size: u64, max_size: u64 },
    Maglev { table_size: u64 },
    ClusterProvided,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Limits {
    /// Envoy's defaults.
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Outlier {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: Option<u32>,
    pub consecutive_local_origin_failure: Option<u32>,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub discovery: Discovery,
    /// The EDS name to ask for (defaults to the cluster name).
    pub eds_service_name: String,
    pub lb: LbKind,
    pub connect_timeout: Duration,
    pub http2: bool,
    pub limits: Limits,
    pub outlier: Option<Outlier>,
    /// Hosts carried inline (STATIC, STRICT_DNS, LOGICAL_DNS).
    pub inline_hosts: Option<Vec<Locality>>,
    /// TLS origination from `transport_socket` (`None`: plaintext).
    pub tls: Option<Arc<UpstreamTls>>,
    /// `transport_socket_matches`, in order: an endpoint whose
    /// `envoy.transport_socket_match` metadata has every field of a match uses its socket.
    pub tls_matches: Vec<TlsMatch>,
}

/// One of a cluster's `transport_socket_matches`.
#[derive(Debug, Clone)]
pub struct TlsMatch {
    pub name: String,
    pub fields: Vec<(String, String)>,
    pub tls: Option<Arc<UpstreamTls>>,
}

/// The endpoint metadata filter `transport_socket_matches` look at.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

impl Cluster {
    /// The TLS a connection to `host` uses (Envoy: the first matching
    /// `transport_socket_matches` entry, else the cluster's `transport_socket`).
    pub fn tls_for(&self, host: &HostAddr) -> Option<Arc<UpstreamTls>> {
        self.tls_matches
            .iter()
            .find(|m| m.fields.iter().all(|f| host.tls_match.contains(f)))
            .map_or_else(|| self.tls.clone(), |m| m.tls.clone())
    }

    /// The SDS names this cluster's TLS contexts use.
    pub fn sds_names(&self) -> Vec<&str> {
        self.tls
            .iter()
            .chain(self.tls_matches.iter().filter_map(|m| m.tls.as_ref()))
            .flat_map(|t| t.sds_names())
            .collect()
    }
}

/// One upstream host as the proxy balances over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddr {
    /// `ip:port` once resolved; DNS names stay in `hostname` until resolution.
    pub hostname: String,
    pub port: u16,
    pub weight: u32,
    pub healthy: bool,
    /// String fields of the endpoint's `envoy.transport_socket_match` metadata (e.g.
    /// `tlsMode: istio`), sorted.
    pub tls_match: Vec<(String, String)>,
}

impl HostAddr {
    /// Envoy's `address()->asString()`: `1.2.3.4:80`, `[::1]:80`.
    pub fn key(&self) -> String {
        match self.hostname.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port).to_string(),
            Err(_) => format!("{}:{}", self.hostname, self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    pub name: String,
    pub priority: u32,
    pub weight: u32,
    pub hosts: Vec<HostAddr>,
}

fn socket(a: Option<&Address>) -> Option<(String, u16)> {
    match a?.address.as_ref()? {
        address::Address::SocketAddress(s) => {
            let port = match s.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(p).ok()?,
                _ => return None,
            };
            Some((s.address.clone(), port))
        }
        _ => None,
    }
}

fn struct_strings(s: &envoy_types::pb::google::protobuf::Struct) -> Vec<(String, String)> {
    use envoy_types::pb::google::protobuf::value::Kind;
    let mut out: Vec<(String, String)> = s
        .fields
        .iter()
        .filter_map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
            Some(Kind::BoolValue(b)) => Some((k.clone(), b.to_string())),
            Some(Kind::NumberValue(n)) => Some((k.clone(), n.to_string())),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn socket_match(
    m: Option<&envoy_types::pb::envoy::config::core::v3::Metadata>,
) -> Vec<(String, String)> {
    m.and_then(|m| m.filter_metadata.get(TRANSPORT_SOCKET_MATCH))
        .map(struct_strings)
        .unwrap_or_default()
}

/// The hosts of an assignment, grouped by locality, in the order given.
pub fn localities(la: &ClusterLoadAssignment) -> Result<Vec<Locality>, ConfigError> {
    la.endpoints
        .iter()
        .map(|l| {
            let hosts = l
                .lb_endpoints
                .iter()
                .filter_map(|e| {
                    let ep = match e.host_identifier.as_ref()? {
                        lb_endpoint::HostIdentifier::Endpoint(ep) => ep,
                        _ => return None,
                    };
                    let (hostname, port) = socket(ep.address.as_ref())?;
                    let status =
                        HealthStatus::try_from(e.health_status).unwrap_or(HealthStatus::Unknown);
                    Some(HostAddr {
                        tls_match: socket_match(e.metadata.as_ref()),
                        hostname,
                        port,
                        weight: e
                            .load_balancing_weight
                            .as_ref()
                            .map_or(1, |w| w.value.max(1)),
                        healthy: matches!(status, HealthStatus::Unknown | HealthStatus::Healthy),
                    })
                })
                .collect();
            Ok(Locality {
                name: l
                    .locality
                    .as_ref()
                    .map(|x| format!("{}/{}/{}", x.region, x.zone, x.sub_zone))
                    .unwrap_or_default(),
                priority: l.priority,
                weight: l.load_balancing_weight.as_ref().map_or(0, |w| w.value),
                hosts,
            })
        })
        .collect()
}

impl Cluster {
    #[allow(deprecated)] // `http2_protocol_options` still arrives from istiod
    pub fn from_proto(c: &PbCluster) -> Result<Self, ConfigError> {
        use cluster::{ClusterDiscoveryType, DiscoveryType as D, LbPolicy as L};
        let what = || format!("cluster {:?}", c.name);
        let unsupported = |feature: String| ConfigError::Unsupported {
            what: what(),
            feature,
        };
        let discovery = match &c.cluster_discovery_type {
            Some(ClusterDiscoveryType::Type(t)) => match D::try_from(*t) {
                Ok(D::Eds) => Discovery::Eds,
                Ok(D::Static) => Discovery::Static,
                Ok(D::StrictDns) => Discovery::StrictDns,
                Ok(D::LogicalDns) => Discovery::LogicalDns,
                Ok(D::OriginalDst) => Discovery::OriginalDst,
                Err(_) => return Err(unsupported(format!("discovery type {t}"))),
            },
            None => Discovery::Static,
            Some(ClusterDiscoveryType::ClusterType(t)) => {
                return Err(unsupported(format!("custom cluster type {:?}", t.name)))
            }
        };
        let lb = match L::try_from(c.lb_policy) {
            Ok(L::RoundRobin) => LbKind::RoundRobin,
            Ok(L::LeastRequest) => LbKind::LeastRequest,
            Ok(L::Random) => LbKind::Random,
            Ok(L::RingHash) => {
                let cfg = match &c.lb_config {
                    Some(cluster::LbConfig::RingHashLbConfig(r)) => Some(r),
                    _ => None,
                };
                LbKind::RingHash {
                    min_size: cfg
                        .and_then(|r| r.minimum_ring_size.as_ref())
                        .map_or(1024, |v| v.value),
                    max_size: cfg
                        .and_then(|r| r.maximum_ring_size.as_ref())
                        .map_or(8 * 1024 * 1024, |v| v.value),
                }
            }
            Ok(L::Maglev) => LbKind::Maglev {
                table_size: match &c.lb_config {
                    Some(cluster::LbConfig::MaglevLbConfig(m)) => {
                        m.table_size.as_ref().map_or(65537, |v| v.value)
                    }
                    _ => 65537,
                },
            },
            Ok(L::ClusterProvided) => LbKind::ClusterProvided,
            _ => return Err(unsupported(format!("lb_policy {}", c.lb_policy))),
        };
        if let LbKind::Maglev { table_size } = lb {
            if !is_prime(table_size) {
                return Err(ConfigError::Invalid {
                    what: what(),
                    why: format!("maglev table size {table_size} is not a prime number"),
                });
            }
        }
        let what_ts = || format!("{}: transport_socket", what());
        let tls = match &c.transport_socket {
            Some(ts) => tls::upstream(ts, &what_ts)?.map(Arc::new),
            None => None,
        };
        let tls_matches = c
            .transport_socket_matches
            .iter()
            .map(|m| {
                let what_m = || format!("{}: transport_socket_matches {:?}", what(), m.name);
                let tls = match &m.transport_socket {
                    Some(ts) => tls::upstream(ts, &what_m)?.map(Arc::new),
                    None => None,
                };
                Ok(TlsMatch {
                    name: m.name.clone(),
                    fields: m.r#match.as_ref().map(struct_strings).unwrap_or_default(),
                    tls,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let mut http2 = c.http2_protocol_options.is_some();
        if let Some(any) = c.typed_extension_protocol_options.get(HTTP_OPTIONS_KEY) {
            let opts = HttpProtocolOptions::decode(any.value.as_slice()).map_err(|e| {
                ConfigError::Invalid {
                    what: what(),
                    why: format!("{HTTP_OPTIONS_KEY} does not decode: {e}"),
                }
            })?;
            if let Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) =
                &opts.upstream_protocol_options
            {
                http2 = matches!(
                    e.protocol_config,
                    Some(ProtocolConfig::Http2ProtocolOptions(_))
                );
            }
        }
        let limits = c
            .circuit_breakers
            .as_ref()
            .and_then(|cb| cb.thresholds.first())
            .map(|t| {
                let d = Limits::default();
                Limits {
                    max_connections: t
                        .max_connections
                        .as_ref()
                        .map_or(d.max_connections, |v| v.value),
                    max_pending_requests: t
                        .max_pending_requests
                        .as_ref()
                        .map_or(d.max_pending_requests, |v| v.value),
                    max_requests: t.max_requests.as_ref().map_or(d.max_requests, |v| v.value),
                    max_retries: t.max_retries.as_ref().map_or(d.max_retries, |v| v.value),
                }
            })
            .unwrap_or_default();
        let outlier = c.outlier_detection.as_ref().map(|o| Outlier {
            consecutive_5xx: o.consecutive_5xx.as_ref().map_or(5, |v| v.value),
            consecutive_gateway_failure: o.consecutive_gateway_failure.as_ref().map(|v| v.value),
            consecutive_local_origin_failure: o
                .consecutive_local_origin_failure
                .as_ref()
                .map(|v| v.value),
            base_ejection_time: o
                .base_ejection_time
                .as_ref()
                .and_then(duration)
                .unwrap_or(Duration::from_secs(30)),
            max_ejection_percent: o.max_ejection_percent.as_ref().map_or(10, |v| v.value),
        });
        let inline_hosts = match (&c.load_assignment, discovery) {
            (Some(la), Discovery::Static | Discovery::StrictDns | Discovery::LogicalDns) => {
                Some(localities(la)?)
            }
            (None, Discovery::Static) => Some(Vec::new()),
            _ => None,
        };
        Ok(Cluster {
            name: c.name.clone(),
            discovery,
            eds_service_name: c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| c.name.clone()),
            lb,
            connect_timeout: c
                .connect_timeout
                .as_ref()
                .and_then(duration)
                .unwrap_or(Duration::from_secs(5)),
            http2,
            limits,
            outlier,
            inline_hosts,
            tls,
            tls_matches,
        })
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut i = 2u64;
    while i * i <= n {
        if n.is_multiple_of(i) {
            return false;
        }
        i += 1;
    }
    true
}
