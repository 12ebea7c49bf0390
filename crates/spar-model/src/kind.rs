//! Every kind Spar reads, with the API groups and versions it is served under.

use std::fmt;

/// Which family a kind belongs to decides how it is read and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Istio CRDs: schema-checked `spec`, webhook rules, unknown fields warned.
    Istio,
    /// Kubernetes objects: only the fields a mesh needs are read; the rest is ignored.
    Kubernetes,
    /// The 2019 Istio APIs: read, then converted to today's resources.
    Legacy,
    /// Recognised but not applied by Spar (yet): parsed envelope only, with a warning.
    Unsupported,
}

macro_rules! kinds {
    ($( $variant:ident => $family:ident, $group:literal, [$($version:literal),+], namespaced: $ns:literal; )*) => {
        /// A resource kind Spar knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $($variant,)* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => stringify!($variant),)* }
            }

            /// API group; empty for Kubernetes' core group.
            pub fn group(self) -> &'static str {
                match self { $(Kind::$variant => $group,)* }
            }

            /// Versions served, newest first.
            pub fn versions(self) -> &'static [&'static str] {
                match self { $(Kind::$variant => &[$($version),+],)* }
            }

            pub fn family(self) -> Family {
                match self { $(Kind::$variant => Family::$family,)* }
            }

            pub fn is_namespaced(self) -> bool {
                match self { $(Kind::$variant => $ns,)* }
            }
        }
    };
}

// Istio's served versions are those of its CRD bundle (`istio::types::KINDS` is checked
// against this table in a test).
kinds! {
    VirtualService => Istio, "networking.istio.io", ["v1", "v1beta1", "v1alpha3"], namespaced: true;
    DestinationRule => Istio, "networking.istio.io", ["v1", "v1beta1", "v1alpha3"], namespaced: true;
    Gateway => Istio, "networking.istio.io", ["v1", "v1beta1", "v1alpha3"], namespaced: true;
    ServiceEntry => Istio, "networking.istio.io", ["v1", "v1beta1", "v1alpha3"], namespaced: true;
    WorkloadEntry => Istio, "networking.istio.io", ["v1", "v1beta1", "v1alpha3"], namespaced: true;
    WorkloadGroup => Istio, "networking.istio.io", ["v1", "v1beta1", "v1alpha3"], namespaced: true;
    Sidecar => Istio, "networking.istio.io", ["v1", "v1beta1", "v1alpha3"], namespaced: true;
    ProxyConfig => Istio, "networking.istio.io", ["v1beta1"], namespaced: true;
    EnvoyFilter => Istio, "networking.istio.io", ["v1alpha3"], namespaced: true;
    PeerAuthentication => Istio, "security.istio.io", ["v1", "v1beta1"], namespaced: true;
    AuthorizationPolicy => Istio, "security.istio.io", ["v1", "v1beta1"], namespaced: true;
    RequestAuthentication => Istio, "security.istio.io", ["v1", "v1beta1"], namespaced: true;
    Telemetry => Istio, "telemetry.istio.io", ["v1", "v1alpha1"], namespaced: true;
    WasmPlugin => Istio, "extensions.istio.io", ["v1alpha1"], namespaced: true;
    TrafficExtension => Istio, "extensions.istio.io", ["v1alpha1"], namespaced: true;
    Service => Kubernetes, "", ["v1"], namespaced: true;
    Endpoints => Kubernetes, "", ["v1"], namespaced: true;
    EndpointSlice => Kubernetes, "discovery.k8s.io", ["v1", "v1beta1"], namespaced: true;
    Namespace => Kubernetes, "", ["v1"], namespaced: false;
    ServiceAccount => Kubernetes, "", ["v1"], namespaced: true;
    Deployment => Kubernetes, "apps", ["v1"], namespaced: true;
    Pod => Kubernetes, "", ["v1"], namespaced: true;
    ConfigMap => Kubernetes, "", ["v1"], namespaced: true;
    Secret => Kubernetes, "", ["v1"], namespaced: true;
    Policy => Legacy, "authentication.istio.io", ["v1alpha1"], namespaced: true;
    MeshPolicy => Legacy, "authentication.istio.io", ["v1alpha1"], namespaced: false;
    RbacConfig => Legacy, "rbac.istio.io", ["v1alpha1"], namespaced: false;
    ClusterRbacConfig => Legacy, "rbac.istio.io", ["v1alpha1"], namespaced: false;
    ServiceRole => Legacy, "rbac.istio.io", ["v1alpha1"], namespaced: true;
    ServiceRoleBinding => Legacy, "rbac.istio.io", ["v1alpha1"], namespaced: true;
    GatewayApiGateway => Unsupported, "gateway.networking.k8s.io", ["v1", "v1beta1", "v1alpha2"], namespaced: true;
    HTTPRoute => Unsupported, "gateway.networking.k8s.io", ["v1", "v1beta1", "v1alpha2"], namespaced: true;
    GRPCRoute => Unsupported, "gateway.networking.k8s.io", ["v1", "v1alpha2"], namespaced: true;
    TCPRoute => Unsupported, "gateway.networking.k8s.io", ["v1alpha2"], namespaced: true;
    TLSRoute => Unsupported, "gateway.networking.k8s.io", ["v1alpha2", "v1alpha3"], namespaced: true;
    GatewayClass => Unsupported, "gateway.networking.k8s.io", ["v1", "v1beta1"], namespaced: false;
    ReferenceGrant => Unsupported, "gateway.networking.k8s.io", ["v1beta1", "v1alpha2"], namespaced: true;
}

/// Why an `apiVersion`/`kind` pair is not one Spar reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    #[error("missing `kind`; every resource needs `apiVersion` and `kind`")]
    MissingKind,
    #[error("missing `apiVersion` for kind {0}")]
    MissingApiVersion(String),
    #[error("unknown kind {kind:?} (apiVersion {api_version:?}); Spar knows: {known}")]
    Unknown {
        api_version: String,
        kind: String,
        known: String,
    },
    #[error("{kind} is not served as {api_version:?}; use one of: {served}")]
    Version {
        kind: String,
        api_version: String,
        served: String,
    },
}

impl Kind {
    /// The name a user writes in `kind:`; Gateway API's Gateway shares Istio's name.
    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::GatewayApiGateway => "Gateway",
            other => other.name(),
        }
    }

    /// `group/version` strings this kind is served under, e.g. `networking.istio.io/v1`.
    pub fn api_versions(self) -> impl Iterator<Item = String> {
        let group = self.group();
        self.versions().iter().map(move |v| {
            if group.is_empty() {
                (*v).to_string()
            } else {
                format!("{group}/{v}")
            }
        })
    }

    /// The preferred `apiVersion` (what Spar writes when it converts or prints).
    pub fn preferred_api_version(self) -> String {
        self.api_versions().next().unwrap_or_default()
    }

    /// Resolves an `apiVersion` and `kind` as written in a manifest.
    pub fn resolve(api_version: &str, kind: &str) -> Result<Kind, KindError> {
        if kind.is_empty() {
            return Err(KindError::MissingKind);
        }
        if api_version.is_empty() {
            return Err(KindError::MissingApiVersion(kind.to_string()));
        }
        let (group, _) = split_api_version(api_version);
        let candidates: Vec<Kind> = Kind::ALL
            .iter()
            .copied()
            .filter(|k| k.kind_name() == kind)
            .collect();
        if candidates.is_empty() {
            return Err(KindError::Unknown {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                known: known_kinds(),
            });
        }
        if let Some(k) = candidates
            .iter()
            .find(|k| k.api_versions().any(|v| v == api_version))
        {
            return Ok(*k);
        }
        let same_group = candidates.iter().find(|k| k.group() == group);
        match same_group {
            Some(k) => Err(KindError::Version {
                kind: kind.to_string(),
                api_version: api_version.to_string(),
                served: k.api_versions().collect::<Vec<_>>().join(", "),
            }),
            None => Err(KindError::Unknown {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                known: known_kinds(),
            }),
        }
    }
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// `Kind (group)` for every kind Spar reads, for error messages.
pub fn known_kinds() -> String {
    let mut names: Vec<String> = Kind::ALL
        .iter()
        .map(|k| {
            let g = if k.group().is_empty() {
                "core"
            } else {
                k.group()
            };
            format!("{} ({g})", k.kind_name())
        })
        .collect();
    names.sort();
    names.dedup();
    names.join(", ")
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_served_version() {
        assert_eq!(
            Kind::resolve("networking.istio.io/v1alpha3", "VirtualService"),
            Ok(Kind::VirtualService)
        );
        assert_eq!(
            Kind::resolve("networking.istio.io/v1beta1", "Gateway"),
            Ok(Kind::Gateway)
        );
        assert_eq!(
            Kind::resolve("gateway.networking.k8s.io/v1", "Gateway"),
            Ok(Kind::GatewayApiGateway)
        );
        assert_eq!(Kind::resolve("v1", "Service"), Ok(Kind::Service));
        assert_eq!(
            Kind::resolve("rbac.istio.io/v1alpha1", "ServiceRole"),
            Ok(Kind::ServiceRole)
        );
    }

    #[test]
    fn explains_what_is_wrong() {
        let e = Kind::resolve("networking.istio.io/v2", "VirtualService").unwrap_err();
        assert!(
            e.to_string()
                .contains("networking.istio.io/v1, networking.istio.io/v1beta1"),
            "{e}"
        );
        let e = Kind::resolve("example.com/v1", "Frobnicator").unwrap_err();
        assert!(
            e.to_string()
                .contains("VirtualService (networking.istio.io)"),
            "{e}"
        );
        assert_eq!(Kind::resolve("v1", ""), Err(KindError::MissingKind));
    }
}
