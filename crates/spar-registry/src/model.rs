//! The registry's domain types: services, ports, protocols, endpoints, visibility.

use std::collections::BTreeMap;

/// The protocol of a service port, decided like Istio (see [`crate::protocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tls,
    Tcp,
    Mongo,
    Redis,
    Mysql,
    Udp,
    /// Nothing says: the proxy sniffs the first bytes (Istio's "auto-detect").
    Unsupported,
}

impl Protocol {
    /// Istio's spelling (`HTTP`, `GRPC-Web`, ...; `UnsupportedProtocol` for auto-detect).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Mongo => "Mongo",
            Protocol::Redis => "Redis",
            Protocol::Mysql => "MySQL",
            Protocol::Udp => "UDP",
            Protocol::Unsupported => "UnsupportedProtocol",
        }
    }

    /// Routed by HTTP route tables (an HTTP connection manager on the listener).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// Speaks HTTP/2 to the upstream.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    /// Proxied as opaque bytes (TCP proxy), including TLS without termination.
    pub fn is_tcp(self) -> bool {
        !self.is_http() && self != Protocol::Unsupported && self != Protocol::Udp
    }
}

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    /// The port name as written (empty when unnamed).
    pub name: String,
    pub port: u32,
    pub protocol: Protocol,
}

/// How clients find the service's endpoints (Istio's `Resolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    /// The control plane lists the endpoints (EDS): Kubernetes services, STATIC entries.
    ClientSideLb,
    /// Forward to the address the client dialled (ServiceEntry `NONE`, headless services).
    Passthrough,
    /// The proxy resolves endpoint hostnames and balances over all answers (`DNS`).
    DnsLb,
    /// The proxy resolves and uses the first answer (`DNS_ROUND_ROBIN`).
    DnsRoundRobin,
}

/// Where a service came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceOrigin {
    Kubernetes,
    ServiceEntry,
}

/// Which namespaces may see a service (`exportTo`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Visibility {
    /// `*`.
    Public,
    /// `~`: nobody.
    None,
    /// `.` (resolved to the owning namespace) and named namespaces.
    Namespaces(Vec<String>),
}

impl Visibility {
    /// Reads Istio's `exportTo` list; `.` means `namespace`. `*` anywhere wins.
    pub fn from_export_to(list: &[String], namespace: &str) -> Visibility {
        if list.iter().any(|e| e == "*") {
            return Visibility::Public;
        }
        let mut names: Vec<String> = list
            .iter()
            .filter(|e| e.as_str() != "~")
            .map(|e| {
                if e == "." {
                    namespace.to_string()
                } else {
                    e.clone()
                }
            })
            .collect();
        if names.is_empty() {
            return Visibility::None;
        }
        names.sort();
        names.dedup();
        Visibility::Namespaces(names)
    }

    pub fn visible_to(&self, namespace: &str) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::None => false,
            Visibility::Namespaces(ns) => ns.iter().any(|n| n == namespace),
        }
    }
}

/// One workload address behind a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// IP address, or a hostname for DNS-resolved ServiceEntries.
    pub address: String,
    /// Service port number → port on this endpoint.
    pub ports: BTreeMap<u32, u32>,
    pub labels: BTreeMap<String, String>,
    /// `region/zone/subzone` (empty parts allowed), empty when unknown.
    pub locality: String,
    pub namespace: String,
    pub service_account: String,
    /// The workload (Deployment, Pod or WorkloadEntry name) it belongs to.
    pub workload: String,
    /// Runs an Istio-compatible proxy, so auto mTLS may use ISTIO_MUTUAL to it.
    pub has_sidecar: bool,
    /// Load-balancing weight (1 unless a WorkloadEntry says otherwise).
    pub weight: u32,
    /// No real address existed: see [`crate::workload::synthetic_ip`].
    pub synthetic: bool,
}

impl Endpoint {
    /// Whether every label of `subset` is on this endpoint (an empty subset matches all).
    pub fn matches(&self, subset: &BTreeMap<String, String>) -> bool {
        subset.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

/// A service: a Kubernetes Service or one host of a ServiceEntry.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The fully qualified name (`reviews.default.svc.cluster.local`, or the ServiceEntry host).
    pub hostname: String,
    /// The Kubernetes name (or the ServiceEntry's resource name).
    pub name: String,
    pub namespace: String,
    /// Every name the service answers to, FQDN first (see [`Service::aliases_from`]).
    pub aliases: Vec<String>,
    /// Sorted by port number.
    pub ports: Vec<ServicePort>,
    /// Virtual IPs (ClusterIP, ServiceEntry `addresses`), possibly CIDRs.
    pub addresses: Vec<String>,
    pub resolution: Resolution,
    /// ServiceEntry `MESH_EXTERNAL`.
    pub mesh_external: bool,
    /// ServiceEntry `subjectAltNames`: identities its endpoints may present besides their
    /// own service accounts.
    pub subject_alt_names: Vec<String>,
    pub visibility: Visibility,
    pub origin: ServiceOrigin,
    /// Sorted by address.
    pub endpoints: Vec<Endpoint>,
    /// Service-level labels (Kubernetes metadata labels).
    pub labels: BTreeMap<String, String>,
    /// Which workloads back it: the Kubernetes `selector` or the ServiceEntry
    /// `workloadSelector` (empty: none selected this way).
    pub selector: BTreeMap<String, String>,
    /// Per service port: the port on the workload (`targetPort` as a number, or the
    /// service port when it is named and unresolved, or absent).
    pub target_ports: BTreeMap<u32, TargetPort>,
}

/// Where a service port lands on the workload.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetPort {
    Number(u32),
    /// A container port name, resolved per workload.
    Named(String),
}

impl Service {
    /// The SPIFFE identities a client may accept from this service's endpoints (Istio's
    /// service accounts of a service): the service account of every endpoint that runs a
    /// proxy, plus ServiceEntry `subjectAltNames`; sorted, without duplicates.
    pub fn identities(&self, trust_domain: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .endpoints
            .iter()
            .filter(|e| e.has_sidecar && !e.service_account.is_empty())
            .map(|e| {
                format!(
                    "spiffe://{trust_domain}/ns/{}/sa/{}",
                    e.namespace, e.service_account
                )
            })
            .chain(self.subject_alt_names.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn port(&self, number: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == number)
    }

    /// Names this service answers to from `namespace`: Kubernetes services add the short
    /// name only in their own namespace, as Kubernetes DNS search paths do.
    pub fn aliases_from(&self, namespace: &str) -> Vec<&str> {
        self.aliases
            .iter()
            .map(String::as_str)
            .filter(|a| {
                self.origin != ServiceOrigin::Kubernetes
                    || a.contains('.')
                    || namespace == self.namespace
            })
            .collect()
    }

    /// Endpoints serving `port` whose labels carry every `subset` label, each with the
    /// port to dial on it.
    pub fn endpoints_for<'a>(
        &'a self,
        port: u32,
        subset: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = (&'a Endpoint, u32)> + 'a {
        self.endpoints
            .iter()
            .filter(move |e| e.matches(subset))
            .filter_map(move |e| e.ports.get(&port).map(|p| (e, *p)))
    }
}
