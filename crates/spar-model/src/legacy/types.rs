//! The 2019 API types, with the proto's JSON names. Istio read these with protobuf's
//! JSON parser, which accepts both the JSON name (`jwksUri`) and the original proto
//! field name (`jwks_uri`); both spellings occur in the documentation and books of the
//! time (`jwt_headers`, `trigger_rules`), so both are accepted here (serialized with
//! the JSON name).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

/// A field that is present means "set", even when written as `null`: `peers: [{mtls: }]`
/// selects mutual TLS with its defaults, as Istio read it.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

// --- authentication.istio.io/v1alpha1 ---

/// `Policy` and `MeshPolicy` (same schema; `MeshPolicy` is cluster-scoped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Policy {
    /// Services the policy applies to; empty means every workload in the namespace.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetSelector>,
    /// Empty means no peer authentication (plain text) for the targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerAuthenticationMethod>,
    #[serde(alias = "peer_is_optional", skip_serializing_if = "is_false")]
    pub peer_is_optional: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<OriginAuthenticationMethod>,
    #[serde(alias = "origin_is_optional", skip_serializing_if = "is_false")]
    pub origin_is_optional: bool,
    #[serde(alias = "principal_binding", skip_serializing_if = "Option::is_none")]
    pub principal_binding: Option<PrincipalBinding>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TargetSelector {
    /// A service's short name (`productpage`); the book writes FQDNs, also accepted.
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSelector>,
}

/// A service port, by number or by name (exactly one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PortSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PeerAuthenticationMethod {
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Never implemented by Istio; reported and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    #[default]
    Strict,
    Permissive,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MutualTls {
    /// Deprecated form of `mode: PERMISSIVE`.
    #[serde(alias = "allow_tls", skip_serializing_if = "is_false")]
    pub allow_tls: bool,
    /// Absent means `STRICT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}

impl MutualTls {
    pub fn effective_mode(&self) -> MtlsMode {
        match self.mode {
            Some(m) => m,
            None if self.allow_tls => MtlsMode::Permissive,
            None => MtlsMode::Strict,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OriginAuthenticationMethod {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Jwt {
    pub issuer: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(alias = "jwks_uri", skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Headers carrying the bare token (no `Bearer ` prefix).
    #[serde(alias = "jwt_headers", skip_serializing_if = "Vec::is_empty")]
    pub jwt_headers: Vec<String>,
    #[serde(alias = "jwt_params", skip_serializing_if = "Vec::is_empty")]
    pub jwt_params: Vec<String>,
    /// The token is checked only for requests matching one of these (all when empty).
    #[serde(alias = "trigger_rules", skip_serializing_if = "Vec::is_empty")]
    pub trigger_rules: Vec<TriggerRule>,
}

/// Matches when the path is in none of `excludedPaths` and (if any are given) in one of
/// `includedPaths`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TriggerRule {
    #[serde(alias = "excluded_paths", skip_serializing_if = "Vec::is_empty")]
    pub excluded_paths: Vec<StringMatch>,
    #[serde(alias = "included_paths", skip_serializing_if = "Vec::is_empty")]
    pub included_paths: Vec<StringMatch>,
}

/// One of `exact`, `prefix`, `suffix`, `regex`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StringMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PrincipalBinding {
    #[default]
    UsePeer,
    UseOrigin,
}

// --- rbac.istio.io/v1alpha1 ---

/// `RbacConfig` and `ClusterRbacConfig` (the mesh-wide switch; Istio read the one named `default`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RbacConfig {
    /// Absent means `OFF`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<RbacMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inclusion: Option<RbacTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclusion: Option<RbacTarget>,
    #[serde(alias = "enforcement_mode", skip_serializing_if = "Option::is_none")]
    pub enforcement_mode: Option<EnforcementMode>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RbacMode {
    #[default]
    Off,
    On,
    OnWithInclusion,
    OnWithExclusion,
}

/// Services (FQDNs) and namespaces RBAC is switched on or off for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RbacTarget {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// `PERMISSIVE` evaluated policies and logged the outcome without enforcing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnforcementMode {
    #[default]
    Enforced,
    Permissive,
}

/// A set of permissions on services of the role's namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceRole {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AccessRule>,
}

/// One permission: the listed fields are AND-ed, the values of a field OR-ed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AccessRule {
    /// Service names (usually FQDNs); `*`, `prefix*` and `*suffix` match several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(alias = "not_hosts", skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(alias = "not_paths", skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(alias = "not_methods", skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<i32>,
    #[serde(alias = "not_ports", skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

/// An attribute (`destination.labels[version]`, `request.headers[x-id]`) and the values it may have.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Constraint {
    pub key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Grants a role (by `roleRef`, or inline `actions` in Istio 1.4) to subjects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceRoleBinding {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<Subject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_ref: Option<RoleRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<EnforcementMode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<AccessRule>,
    /// Istio 1.4's shorthand for `roleRef` (`/name` or `name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Who a binding grants to; the fields are AND-ed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Subject {
    /// A principal (`cluster.local/ns/default/sa/bar`); `*` is everyone, authenticated or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(alias = "not_names", skip_serializing_if = "Vec::is_empty")]
    pub not_names: Vec<String>,
    /// Deprecated: a JWT `groups` claim value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(alias = "not_groups", skip_serializing_if = "Vec::is_empty")]
    pub not_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(alias = "not_namespaces", skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(alias = "not_ips", skip_serializing_if = "Vec::is_empty")]
    pub not_ips: Vec<String>,
    /// Attribute → value (`source.principal`, `source.namespace`, `request.auth.claims[iss]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RoleRef {
    /// Always `ServiceRole`.
    pub kind: String,
    pub name: String,
}
