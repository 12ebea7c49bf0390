//! CDS: outbound clusters per service port and DestinationRule subset, the passthrough
//! and blackhole clusters, and inbound clusters for the proxy's own workload.
//!
//! Auto mTLS, as istiod builds it: endpoints that run a sidecar carry the EDS metadata
//! `envoy.transport_socket_match: {tlsMode: istio}` (see [`crate::endpoint`]). A cluster
//! with no DestinationRule `tls` for its port and subset gets two
//! `transport_socket_matches`: `tlsMode-istio` (ISTIO_MUTUAL: SDS `default` and `ROOTCA`,
//! SNI `outbound_.<port>_.<subset>_.<host>`, ALPN `istio-peer-exchange,istio`, the
//! service's identities as SANs) and `tlsMode-disabled` (plaintext) for the rest. Not for
//! MESH_EXTERNAL services, passthrough clusters, services whose namespace (or mesh)
//! PeerAuthentication is DISABLE, nor a mesh without workload identities
//! ([`spar_model::ConfigSet::auto_mtls`]).

use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers::Thresholds, cluster, CircuitBreakers, Cluster, OutlierDetection,
};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, Http2ProtocolOptions, HttpProtocolOptions,
    TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, subject_alt_name_matcher, CertificateValidationContext, CommonTlsContext,
    SdsSecretConfig, SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options as upstream_opts, HttpProtocolOptions as UpstreamHttpOptions,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use spar_model::istio::types::{ClientTLSMode, ClientTLSSettings, SimpleLB};
use spar_registry::{Resolution, Service, ServicePort};

use crate::cluster_policy;
use crate::dr::{self, Policy};
use crate::endpoint;
use crate::util::{self, any, parse_duration, u32v, u32v_i};
use crate::Ctx;

use cluster::{DiscoveryType, LbPolicy};

/// Istio's default connection limits: effectively none, so that only a DestinationRule
/// limits traffic (Envoy's own defaults, 1024, would cap busy services silently).
const UNLIMITED: u32 = u32::MAX;

pub const HTTP_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
/// SDS names of the workload certificate and the mesh root, as Istio's agent serves them.
pub const SDS_DEFAULT: &str = "default";
pub const SDS_ROOT: &str = "ROOTCA";

/// Outbound clusters for every service the proxy sees, plus their EDS assignments.
pub fn outbound(ctx: &Ctx<'_>) -> (Vec<Cluster>, Vec<ClusterLoadAssignment>) {
    let mut clusters = Vec::new();
    let mut assignments = Vec::new();
    for svc in &ctx.services {
        let rule = dr::for_host(ctx, &svc.hostname, &svc.namespace);
        for port in &svc.ports {
            if port.protocol == spar_registry::Protocol::Udp {
                continue;
            }
            let mut subsets: Vec<(String, Option<&std::collections::BTreeMap<String, String>>)> =
                vec![(String::new(), None)];
            if let Some(r) = rule {
                for s in &r.spec.subsets {
                    if let Some(name) = &s.name {
                        subsets.push((name.clone(), Some(&s.labels)));
                    }
                }
            }
            for (subset, labels) in subsets {
                let policy = rule
                    .map(|r| r.policy(port.port, &subset))
                    .unwrap_or_default();
                let name = util::outbound(port.port, &subset, &svc.hostname);
                let empty = Default::default();
                let labels = labels.unwrap_or(&empty);
                let c = service_cluster(ctx, svc, port, &name, &policy, labels);
                if svc.resolution == Resolution::ClientSideLb {
                    assignments.push(local_assignment(
                        ctx, &name, svc, port.port, labels, &policy,
                    ));
                }
                clusters.push(c);
            }
        }
    }
    (clusters, assignments)
}

/// The assignment as this proxy sees it: with the locality setting applied.
fn local_assignment(
    ctx: &Ctx<'_>,
    name: &str,
    svc: &Service,
    port: u32,
    labels: &std::collections::BTreeMap<String, String>,
    policy: &Policy<'_>,
) -> ClusterLoadAssignment {
    let (mut la, endpoint_labels) = endpoint::with_labels(name, svc, port, labels);
    if let Some(setting) = crate::locality::setting(ctx, policy.load_balancer) {
        crate::locality::apply(
            &mut la,
            &endpoint_labels,
            &crate::locality::parse(&ctx.node.locality),
            &ctx.node.labels,
            &setting,
            policy.outlier_detection.is_some(),
        );
    }
    la
}

fn discovery(t: DiscoveryType) -> Option<cluster::ClusterDiscoveryType> {
    Some(cluster::ClusterDiscoveryType::Type(t as i32))
}

fn service_cluster(
    ctx: &Ctx<'_>,
    svc: &Service,
    port: &ServicePort,
    name: &str,
    policy: &Policy<'_>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Cluster {
    let mut c = Cluster {
        name: name.to_string(),
        connect_timeout: policy
            .connection_pool
            .and_then(|p| p.tcp.as_ref())
            .and_then(|t| parse_duration(t.connect_timeout.as_deref()))
            .or_else(|| Some(mesh_connect_timeout(ctx))),
        ..Default::default()
    };
    match svc.resolution {
        Resolution::ClientSideLb => {
            c.cluster_discovery_type = discovery(DiscoveryType::Eds);
            c.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: Some(util::ads()),
                service_name: name.to_string(),
            });
        }
        Resolution::DnsLb | Resolution::DnsRoundRobin => {
            let t = if svc.resolution == Resolution::DnsLb {
                DiscoveryType::StrictDns
            } else {
                DiscoveryType::LogicalDns
            };
            c.cluster_discovery_type = discovery(t);
            c.dns_lookup_family = cluster::DnsLookupFamily::V4Only as i32;
            let mut la = local_assignment(ctx, name, svc, port.port, labels, policy);
            if t == DiscoveryType::LogicalDns {
                // Envoy accepts exactly one host for LOGICAL_DNS.
                la.endpoints.truncate(1);
                if let Some(l) = la.endpoints.first_mut() {
                    l.lb_endpoints.truncate(1);
                }
            }
            c.load_assignment = Some(la);
        }
        Resolution::Passthrough => {
            c.cluster_discovery_type = discovery(DiscoveryType::OriginalDst);
            c.lb_policy = LbPolicy::ClusterProvided as i32;
        }
    }
    if svc.resolution != Resolution::Passthrough {
        apply_lb(&mut c, policy);
    }
    c.circuit_breakers = Some(circuit_breakers(policy));
    c.outlier_detection = policy.outlier_detection.map(outlier);
    if let Some(min) = policy
        .outlier_detection
        .and_then(|o| o.min_health_percent)
        .and_then(|v| u32::try_from(v).ok())
    {
        c.common_lb_config = Some(cluster::CommonLbConfig {
            healthy_panic_threshold: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                value: f64::from(min),
            }),
            ..Default::default()
        });
    }
    if crate::locality::setting(ctx, policy.load_balancer).is_some_and(|s| s.distributes()) {
        // Envoy ignores locality weights unless the cluster asks for them.
        c.common_lb_config
            .get_or_insert_with(Default::default)
            .locality_config_specifier = Some(
            cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                Default::default(),
            ),
        );
    }
    if let Some(opts) = http_options(port.protocol, policy) {
        c.typed_extension_protocol_options
            .insert(HTTP_OPTIONS_KEY.to_string(), any(&opts));
    }
    match policy.tls {
        Some(tls) => c.transport_socket = upstream_tls(ctx, tls, port.port, name, svc),
        None if auto_mtls_applies(ctx, svc) => {
            c.transport_socket_matches = auto_mtls(ctx, port.port, name, svc);
        }
        None => {}
    }
    cluster_policy::retry_budget(&mut c, policy.retry_budget);
    if svc.resolution != Resolution::Passthrough {
        cluster_policy::warmup(&mut c, policy.load_balancer);
    }
    cluster_policy::proxy_protocol(&mut c, policy.proxy_protocol);
    c
}

fn mesh_connect_timeout(ctx: &Ctx<'_>) -> envoy_types::pb::google::protobuf::Duration {
    parse_duration(ctx.config.mesh().connect_timeout.as_deref()).unwrap_or(util::seconds(10))
}

/// DestinationRule `loadBalancer` → Envoy's policy. Istio's default is LEAST_REQUEST.
fn apply_lb(c: &mut Cluster, policy: &Policy<'_>) {
    let lb = policy.load_balancer;
    if let Some(ch) = lb.and_then(|l| l.consistent_hash.as_ref()) {
        if let Some(m) = &ch.maglev {
            c.lb_policy = LbPolicy::Maglev as i32;
            c.lb_config = Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                table_size: m
                    .table_size
                    .map(|v| envoy_types::pb::google::protobuf::UInt64Value { value: v }),
            }));
        } else {
            c.lb_policy = LbPolicy::RingHash as i32;
            let size = ch
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size)
                .unwrap_or(1024);
            c.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
                cluster::RingHashLbConfig {
                    minimum_ring_size: Some(envoy_types::pb::google::protobuf::UInt64Value {
                        value: size,
                    }),
                    ..Default::default()
                },
            ));
        }
        return;
    }
    c.lb_policy = match lb.and_then(|l| l.simple) {
        Some(SimpleLB::RoundRobin) => LbPolicy::RoundRobin,
        Some(SimpleLB::Random) => LbPolicy::Random,
        Some(SimpleLB::Passthrough) => {
            c.cluster_discovery_type = discovery(DiscoveryType::OriginalDst);
            c.eds_cluster_config = None;
            LbPolicy::ClusterProvided
        }
        _ => LbPolicy::LeastRequest,
    } as i32;
}

fn circuit_breakers(policy: &Policy<'_>) -> CircuitBreakers {
    let tcp = policy.connection_pool.and_then(|p| p.tcp.as_ref());
    let http = policy.connection_pool.and_then(|p| p.http.as_ref());
    let or_max = |v: Option<i32>| u32v_i(v).unwrap_or(u32v(UNLIMITED));
    CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: Some(or_max(tcp.and_then(|t| t.max_connections))),
            max_pending_requests: Some(or_max(http.and_then(|h| h.http1_max_pending_requests))),
            max_requests: Some(or_max(http.and_then(|h| h.http2_max_requests))),
            max_retries: Some(or_max(http.and_then(|h| h.max_retries))),
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn outlier(o: &spar_model::istio::types::OutlierDetection) -> OutlierDetection {
    let five = o
        .consecutive5xx_errors
        .or(o.consecutive_errors.and_then(|v| u32::try_from(v).ok()));
    let enforce = |v: Option<u32>| Some(u32v(if v.unwrap_or(0) > 0 { 100 } else { 0 }));
    OutlierDetection {
        consecutive_5xx: five.map(u32v),
        enforcing_consecutive_5xx: enforce(five),
        consecutive_gateway_failure: o.consecutive_gateway_errors.map(u32v),
        enforcing_consecutive_gateway_failure: enforce(o.consecutive_gateway_errors),
        interval: parse_duration(o.interval.as_deref()),
        base_ejection_time: parse_duration(o.base_ejection_time.as_deref()),
        max_ejection_percent: u32v_i(o.max_ejection_percent),
        split_external_local_origin_errors: o.split_external_local_origin_errors.unwrap_or(false),
        consecutive_local_origin_failure: o.consecutive_local_origin_failures.map(u32v),
        ..Default::default()
    }
}

/// Upstream HTTP settings: HTTP/2 for `http2`/`grpc` ports, and the connection pool's
/// per-connection limits and idle timeout.
fn http_options(
    protocol: spar_registry::Protocol,
    policy: &Policy<'_>,
) -> Option<UpstreamHttpOptions> {
    let http = policy.connection_pool.and_then(|p| p.http.as_ref());
    let common = HttpProtocolOptions {
        idle_timeout: http.and_then(|h| parse_duration(h.idle_timeout.as_deref())),
        max_requests_per_connection: http.and_then(|h| u32v_i(h.max_requests_per_connection)),
        ..Default::default()
    };
    let has_common = common != HttpProtocolOptions::default();
    if !protocol.is_http2() && !has_common {
        return None;
    }
    let explicit = if protocol.is_http2() {
        upstream_opts::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
            Http2ProtocolOptions {
                max_concurrent_streams: http.and_then(|h| u32v_i(h.max_concurrent_streams)),
                ..Default::default()
            },
        )
    } else {
        upstream_opts::explicit_http_config::ProtocolConfig::HttpProtocolOptions(Default::default())
    };
    Some(UpstreamHttpOptions {
        common_http_protocol_options: has_common.then_some(common),
        upstream_protocol_options: Some(
            upstream_opts::UpstreamProtocolOptions::ExplicitHttpConfig(
                upstream_opts::ExplicitHttpConfig {
                    protocol_config: Some(explicit),
                },
            ),
        ),
        ..Default::default()
    })
}

fn file(path: &Option<String>) -> Option<DataSource> {
    path.as_ref().map(|p| DataSource {
        specifier: Some(data_source::Specifier::Filename(p.clone())),
        ..Default::default()
    })
}

fn trust_domain<'a>(ctx: &Ctx<'a>) -> &'a str {
    ctx.config
        .mesh()
        .trust_domain
        .as_deref()
        .unwrap_or("cluster.local")
}

pub fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(util::ads()),
    }
}

/// SAN matchers: `spiffe://` identities are URI SANs, anything else a DNS name.
fn san_matchers(sans: &[String]) -> Vec<SubjectAltNameMatcher> {
    sans.iter()
        .map(|s| SubjectAltNameMatcher {
            san_type: if s.starts_with("spiffe://") {
                subject_alt_name_matcher::SanType::Uri
            } else {
                subject_alt_name_matcher::SanType::Dns
            } as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(s.clone())),
                ignore_case: false,
            }),
            ..Default::default()
        })
        .collect()
}

/// Auto mTLS for a cluster no DestinationRule gives a `tls` mode: on in the mesh, a
/// service inside it, and its namespace (or the mesh) not DISABLEd by PeerAuthentication.
fn auto_mtls_applies(ctx: &Ctx<'_>, svc: &Service) -> bool {
    ctx.config.auto_mtls()
        && !svc.mesh_external
        && svc.resolution != Resolution::Passthrough
        && crate::peer_auth::service_mode(ctx, &svc.namespace) != crate::peer_auth::Mode::Disable
}

/// Istio's auto mTLS sockets: ISTIO_MUTUAL to endpoints whose EDS metadata says they run
/// a proxy (`tlsMode: istio`), plaintext to the rest.
fn auto_mtls(
    ctx: &Ctx<'_>,
    port: u32,
    cluster_name: &str,
    svc: &Service,
) -> Vec<cluster::TransportSocketMatch> {
    let istio = ClientTLSSettings {
        mode: Some(ClientTLSMode::IstioMutual),
        ..Default::default()
    };
    let tls_mode = |v: &str| envoy_types::pb::google::protobuf::Struct {
        fields: [(
            endpoint::TLS_MODE_KEY.to_string(),
            envoy_types::pb::google::protobuf::Value {
                kind: Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
                    v.to_string(),
                )),
            },
        )]
        .into(),
    };
    vec![
        cluster::TransportSocketMatch {
            name: "tlsMode-istio".to_string(),
            r#match: Some(tls_mode("istio")),
            transport_socket: upstream_tls(ctx, &istio, port, cluster_name, svc),
        },
        cluster::TransportSocketMatch {
            name: "tlsMode-disabled".to_string(),
            r#match: Some(Default::default()),
            transport_socket: Some(cluster_policy::raw_buffer()),
        },
    ]
}

/// The client TLS transport socket for an explicit DestinationRule `tls` mode (and the
/// ISTIO_MUTUAL one auto mTLS uses).
fn upstream_tls(
    ctx: &Ctx<'_>,
    tls: &ClientTLSSettings,
    port: u32,
    cluster_name: &str,
    svc: &Service,
) -> Option<TransportSocket> {
    let mode = tls.mode?;
    let mut common = CommonTlsContext::default();
    let mut sni = tls.sni.clone().unwrap_or_default();
    match mode {
        ClientTLSMode::Disable => return None,
        ClientTLSMode::Simple | ClientTLSMode::Mutual => {
            if let Some(cred) = &tls.credential_name {
                // A Kubernetes secret served over SDS under its own name.
                common.tls_certificate_sds_secret_configs = vec![sds(cred)];
                common.validation_context_type = Some(
                    common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                        sds(&format!("{cred}-cacert")),
                    ),
                );
            } else {
                if mode == ClientTLSMode::Mutual {
                    common.tls_certificates = vec![TlsCertificate {
                        certificate_chain: file(&tls.client_certificate),
                        private_key: file(&tls.private_key),
                        ..Default::default()
                    }];
                }
                let skip = tls.insecure_skip_verify.unwrap_or(false);
                if !skip && (tls.ca_certificates.is_some() || !tls.subject_alt_names.is_empty()) {
                    common.validation_context_type = Some(
                        common_tls_context::ValidationContextType::ValidationContext(
                            CertificateValidationContext {
                                trusted_ca: file(&tls.ca_certificates),
                                match_typed_subject_alt_names: san_matchers(&tls.subject_alt_names),
                                ..Default::default()
                            },
                        ),
                    );
                }
            }
        }
        ClientTLSMode::IstioMutual => {
            // With no `subjectAltNames`, the identities the service's endpoints run as
            // (Istio: the service's service accounts).
            let sans = if tls.subject_alt_names.is_empty() {
                svc.identities(trust_domain(ctx))
            } else {
                tls.subject_alt_names.clone()
            };
            common.tls_certificate_sds_secret_configs = vec![sds(SDS_DEFAULT)];
            common.validation_context_type = Some(
                common_tls_context::ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        match_typed_subject_alt_names: san_matchers(&sans),
                        ..Default::default()
                    },
                ),
            );
            if let Some(common_tls_context::ValidationContextType::ValidationContext(v)) =
                common.validation_context_type.take()
            {
                common.validation_context_type = Some(
                    common_tls_context::ValidationContextType::CombinedValidationContext(
                        common_tls_context::CombinedCertificateValidationContext {
                            default_validation_context: Some(v),
                            validation_context_sds_secret_config: Some(sds(SDS_ROOT)),
                            ..Default::default()
                        },
                    ),
                );
            }
            common.alpn_protocols = vec!["istio-peer-exchange".into(), "istio".into()];
            if sni.is_empty() {
                // Istio's SNI for mesh traffic: `outbound_.<port>_.<subset>_.<host>`.
                let subset = cluster_name.split('|').nth(2).unwrap_or_default();
                sni = format!("outbound_.{port}_.{subset}_.{}", svc.hostname);
            }
        }
    }
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(common),
        sni,
        ..Default::default()
    };
    Some(TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
    })
}

/// `PassthroughCluster` and `InboundPassthroughCluster` (ORIGINAL_DST: forward to where
/// the client dialled) and
/// `BlackHoleCluster` (STATIC with no endpoints: every request fails with 502/reset).
pub fn passthrough_and_blackhole(ctx: &Ctx<'_>) -> Vec<Cluster> {
    vec![
        Cluster {
            name: util::PASSTHROUGH.to_string(),
            cluster_discovery_type: discovery(DiscoveryType::OriginalDst),
            lb_policy: LbPolicy::ClusterProvided as i32,
            connect_timeout: Some(mesh_connect_timeout(ctx)),
            circuit_breakers: Some(circuit_breakers(&Policy::default())),
            ..Default::default()
        },
        Cluster {
            name: util::INBOUND_PASSTHROUGH.to_string(),
            cluster_discovery_type: discovery(DiscoveryType::OriginalDst),
            lb_policy: LbPolicy::ClusterProvided as i32,
            connect_timeout: Some(mesh_connect_timeout(ctx)),
            circuit_breakers: Some(circuit_breakers(&Policy::default())),
            ..Default::default()
        },
        Cluster {
            name: util::BLACKHOLE.to_string(),
            cluster_discovery_type: discovery(DiscoveryType::Static),
            connect_timeout: Some(mesh_connect_timeout(ctx)),
            ..Default::default()
        },
    ]
}

/// A port the proxy's workload serves: the service port and where the app listens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InboundPort {
    /// The port traffic arrives on (and the cluster's name: `inbound|<port>||`).
    pub target_port: u32,
    /// Where the application listens: 127.0.0.1 and the same port, unless a Sidecar
    /// ingress listener's `defaultEndpoint` says otherwise.
    pub endpoint: (String, u32),
    pub protocol: spar_registry::Protocol,
}

/// A Sidecar ingress `defaultEndpoint` (`127.0.0.1:8080`, `0.0.0.0:8080`) as the address
/// the proxy forwards to; `0.0.0.0` means the workload's own address, reached locally.
fn default_endpoint(text: &str) -> Option<(String, u32)> {
    let (ip, port) = text.rsplit_once(':')?;
    let ip = if ip == "0.0.0.0" { "127.0.0.1" } else { ip };
    Some((ip.to_string(), port.parse().ok()?))
}

/// The workload's ports: the Sidecar resource's `ingress` listeners when it has any,
/// else the target ports of every service that selects it.
pub fn inbound_ports(ctx: &Ctx<'_>) -> Vec<InboundPort> {
    if let Some(sc) = ctx.sidecar.filter(|sc| !sc.ingress.is_empty()) {
        let mut out: Vec<InboundPort> = sc
            .ingress
            .iter()
            .filter_map(|i| {
                let port = i.port.as_ref()?;
                let number = port.number?;
                let endpoint = i
                    .default_endpoint
                    .as_deref()
                    .and_then(default_endpoint)
                    .unwrap_or_else(|| {
                        ("127.0.0.1".to_string(), port.target_port.unwrap_or(number))
                    });
                Some(InboundPort {
                    target_port: number,
                    endpoint,
                    protocol: spar_registry::protocol::for_entry_port(
                        port.name.as_deref(),
                        port.protocol.as_deref(),
                    ),
                })
            })
            .collect();
        out.sort();
        out.dedup_by_key(|p| p.target_port);
        return out;
    }
    let node = ctx.node;
    let workload = crate::class::own_workload(ctx.registry, node);
    let mut out = Vec::new();
    for svc in ctx
        .registry
        .services_of_workload(&node.namespace, &node.labels)
    {
        for p in &svc.ports {
            let target = match svc.target_ports.get(&p.port) {
                Some(spar_registry::TargetPort::Number(n)) => Some(*n),
                Some(spar_registry::TargetPort::Named(name)) => {
                    workload.and_then(|w| w.named_ports.get(name).copied())
                }
                None => Some(p.port),
            };
            if let Some(t) = target {
                out.push(InboundPort {
                    target_port: t,
                    endpoint: ("127.0.0.1".to_string(), t),
                    protocol: p.protocol,
                });
            }
        }
    }
    out.sort();
    out.dedup_by_key(|p| p.target_port);
    out
}

/// `inbound|<port>||`: STATIC to the app on 127.0.0.1:<port>; HTTP/2 to the app on an
/// `http2`/`grpc` port, as istiod configures it.
pub fn inbound(ctx: &Ctx<'_>, ports: &[InboundPort]) -> Vec<Cluster> {
    ports
        .iter()
        .map(|p| {
            let name = util::cluster_name("inbound", p.target_port, "", "");
            let mut typed_extension_protocol_options = std::collections::HashMap::new();
            if let Some(opts) = http_options(p.protocol, &Policy::default()) {
                typed_extension_protocol_options.insert(HTTP_OPTIONS_KEY.to_string(), any(&opts));
            }
            Cluster {
                typed_extension_protocol_options,
                name: name.clone(),
                cluster_discovery_type: discovery(DiscoveryType::Static),
                connect_timeout: Some(mesh_connect_timeout(ctx)),
                circuit_breakers: Some(circuit_breakers(&Policy::default())),
                load_assignment: Some(endpoint::static_assignment(
                    &name,
                    &p.endpoint.0,
                    p.endpoint.1,
                )),
                ..Default::default()
            }
        })
        .collect()
}
