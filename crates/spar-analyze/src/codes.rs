//! The findings `spar analyze` reports. Codes are stable: tools and CI match on them.
//! Where Istio's `istioctl analyze` has a message for the same problem, Spar uses its
//! code (IST…); problems Istio does not analyze get a Spar code (SPR…).

use spar_model::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

pub const REFERENCED_RESOURCE_NOT_FOUND: Code = Code {
    code: "IST0101",
    name: "ReferencedResourceNotFound",
    severity: Severity::Error,
    summary: "a VirtualService names a gateway, destination host or subset that does not exist, or a Gateway's selector matches no workload",
};

pub const CONFLICTING_VIRTUAL_SERVICE_HOSTS: Code = Code {
    code: "IST0109",
    name: "ConflictingMeshGatewayVirtualServiceHosts",
    severity: Severity::Error,
    summary:
        "two VirtualServices bound to the mesh claim the same host; only one of them takes effect",
};

pub const MTLS_POLICY_CONFLICT: Code = Code {
    code: "IST0113",
    name: "MTLSPolicyConflict",
    severity: Severity::Error,
    summary: "a PeerAuthentication requires mTLS (STRICT) for workloads whose DestinationRule disables TLS: clients will be refused",
};

pub const CONFLICTING_GATEWAYS: Code = Code {
    code: "IST0145",
    name: "ConflictingGateways",
    severity: Severity::Error,
    summary: "Gateway servers on one workload and port overlap in hosts or disagree on protocol",
};

pub const SUBSET_SELECTS_NO_WORKLOAD: Code = Code {
    code: "IST0173",
    name: "DestinationRuleSubsetNotSelectPods",
    severity: Severity::Warning,
    summary: "a DestinationRule subset's labels select none of the service's workloads",
};

pub const GATEWAY_VIRTUAL_SERVICE_HOST_OVERLAP: Code = Code {
    code: "SPR0001",
    name: "ConflictingGatewayVirtualServiceHosts",
    severity: Severity::Warning,
    summary: "two VirtualServices bound to the same gateway claim the same host; their routes are merged in an order you do not control",
};

pub const SERVICE_ENTRY_ADDRESS_CONFLICT: Code = Code {
    code: "SPR0002",
    name: "ServiceEntryAddressConflict",
    severity: Severity::Warning,
    summary: "two services claim the same address and port; traffic to it goes to only one of them",
};

pub const AUTHZ_UNKNOWN_REFERENCE: Code = Code {
    code: "SPR0003",
    name: "AuthorizationPolicyUnknownReference",
    severity: Severity::Warning,
    summary: "an AuthorizationPolicy names a namespace or service account principal that the configuration does not describe",
};

pub const SIDECAR_EGRESS_HOST_UNMATCHED: Code = Code {
    code: "SPR0004",
    name: "SidecarEgressHostNotFound",
    severity: Severity::Warning,
    summary: "a Sidecar egress host matches no service or ServiceEntry",
};

pub const VIRTUAL_SERVICE_NOT_BOUND_TO_MESH: Code = Code {
    code: "SPR0005",
    name: "VirtualServiceGatewayOnly",
    severity: Severity::Warning,
    summary: "a VirtualService for an in-mesh service is bound to a gateway but not to `mesh`: calls from inside the mesh ignore its rules",
};

/// Every code, for `spar analyze --list-codes` and the docs.
pub const ALL: &[Code] = &[
    REFERENCED_RESOURCE_NOT_FOUND,
    CONFLICTING_VIRTUAL_SERVICE_HOSTS,
    MTLS_POLICY_CONFLICT,
    CONFLICTING_GATEWAYS,
    SUBSET_SELECTS_NO_WORKLOAD,
    GATEWAY_VIRTUAL_SERVICE_HOST_OVERLAP,
    SERVICE_ENTRY_ADDRESS_CONFLICT,
    AUTHZ_UNKNOWN_REFERENCE,
    SIDECAR_EGRESS_HOST_UNMATCHED,
    VIRTUAL_SERVICE_NOT_BOUND_TO_MESH,
];
