//! The 2019 APIs (authentication.istio.io v1alpha1, rbac.istio.io v1alpha1) and their conversion to today's.
//!
//! Istio 1.6 removed `Policy`, `MeshPolicy`, `RbacConfig`, `ClusterRbacConfig`,
//! `ServiceRole` and `ServiceRoleBinding`. Spar still reads them ([`types`], with the
//! field names of the time, snake_case spellings included) and converts them to
//! `security.istio.io/v1` PeerAuthentication, RequestAuthentication and
//! AuthorizationPolicy ([`convert`], [`convert_with`]). Every legacy resource gets a
//! deprecation warning that shows the YAML to apply instead.
//!
//! # Judgement calls
//!
//! The two models differ; where no exact translation exists the conversion prefers
//! denying what used to be allowed over allowing what used to be denied, and says so.
//!
//! **Workloads.** Legacy policies named services; the current ones select pods. A
//! target or service `foo` becomes `selector.matchLabels` of the Service `foo` when it
//! is given in [`ConvertOptions::services`], else `{app: foo}` (the convention of
//! Istio's samples), reported as an info finding. Names may be short (`foo`) or
//! FQDNs (`foo.ns.svc.cluster.local`, and the book's `foo.ns.cluster.local`); the
//! second label is the namespace, and a name in another namespace than the policy's
//! is left out with a warning (legacy policies never reached across namespaces).
//!
//! **Peer authentication.**
//! - `peers: [{mtls: {}}]`, `mtls:` (null) and `mtls` without `mode` are `STRICT`;
//!   `allowTls: true` is `PERMISSIVE`; `peerIsOptional: true` becomes `PERMISSIVE`.
//! - A Policy without an mTLS peer (empty `peers`) turned mTLS *off* for its targets
//!   (legacy policies did not inherit), so it becomes `mode: DISABLE`, with a warning.
//! - Peer `jwt` was never implemented: ignored with a warning.
//! - A Policy without targets and a MeshPolicy become the PeerAuthentication named
//!   `default` (in the policy's namespace, or the root namespace). Istio rejected such
//!   policies unless they were named `default`; they are converted anyway, with a warning.
//!   A MeshPolicy with targets (also rejected) converts to nothing.
//! - Targets with ports become `portLevelMtls` on a PeerAuthentication with no
//!   workload-wide mode (so other ports inherit, as before). `portLevelMtls` keys
//!   are container ports while legacy ports were service ports: with the Service
//!   known, a port (number or name) maps to its `targetPort`; without it, a number
//!   is assumed to be the container port (info) and a *name* cannot be mapped, so
//!   that whole target is left out with a warning rather than applying its mode to
//!   every port.
//! - PeerAuthentications for the same namespace and selector (the book's "STRICT for
//!   bar, PERMISSIVE on its health-check port" pair) are merged into one, because the
//!   current API picks only the oldest of several; conflicting modes keep the first
//!   and warn.
//!
//! **Origin (JWT) authentication.**
//! - Each `origins[].jwt` becomes a `jwtRules` entry of a RequestAuthentication with
//!   the same selector: `jwksUri`, `jwks`, `audiences`, `jwt_headers` →
//!   `fromHeaders: [{name}]` (no prefix: the old API read the bare token),
//!   `jwt_params` → `fromParams`.
//! - The old API rejected requests *without* a token; RequestAuthentication only
//!   rejects invalid ones. Unless `originIsOptional`, an AuthorizationPolicy
//!   `<name>-require-jwt` with `action: DENY` and
//!   `from.source.notRequestPrincipals: ["*"]` restores that. DENY rather than an
//!   ALLOW with `requestPrincipals: ["*"]`, because ALLOW policies are OR-ed with the
//!   converted RBAC bindings (a binding would let token-less requests through), while
//!   DENY applies on top of them, as authentication did.
//! - `trigger_rules` scope that DENY policy: each rule becomes a `to.operation` with
//!   `paths` (included) and `notPaths` (excluded), exact/prefix/suffix as `/x`,
//!   `/x*`, `*x`. A regex path cannot be expressed: the token is then required on all
//!   paths (stricter), with a warning. Target ports add `ports` to the operation. The
//!   RequestAuthentication itself checks tokens on every path (info).
//! - `principalBinding: USE_ORIGIN` has no equivalent (request principals are always
//!   separate from peer principals): warning, advising `requestPrincipals`.
//!
//! **RBAC mode.** Istio read the `ClusterRbacConfig` named `default`, else the
//! `RbacConfig` named `default`; others are ignored with a warning. The kind is matched
//! case-insensitively (the book writes `RBACConfig`), with a warning.
//! - `OFF` (or no mode): nothing, and bindings are not converted (they had no effect;
//!   converting them would switch on enforcement).
//! - `ON`: `allow-nothing` (`spec: {}`) in the root namespace, i.e. mesh-wide.
//! - `ON_WITH_INCLUSION`: `allow-nothing` in each included namespace, and
//!   `allow-nothing-<svc>` with the service's selector in the service's namespace.
//! - `ON_WITH_EXCLUSION`: mesh-wide `allow-nothing` plus `allow-all` (`rules: [{}]`) in
//!   each excluded namespace and `allow-all-<svc>` per excluded service; ALLOW policies
//!   are OR-ed, so these re-open them.
//! - `enforcementMode: PERMISSIVE` (and a binding's `mode: PERMISSIVE`) becomes the
//!   `istio.io/dry-run: "true"` annotation on the allow-nothing and binding policies.
//! - No RbacConfig among the inputs: bindings are converted as if RBAC were ON (one
//!   warning), since the caller may convert roles separately from the config.
//!
//! **Roles and bindings.** A binding becomes ALLOW AuthorizationPolicies in its
//! namespace, one per workload its role's `services` mean (named after the binding,
//! `<binding>-<svc>` when there are several), tagged with both the binding and the
//! role. `services` become the *selector*, not `to.operation.hosts`: `hosts` matches
//! the client-controlled Host header on every workload of the namespace, which would
//! let a caller reach other workloads by naming an allowed host. `*` (and a suffix
//! pattern covering the namespace, `*.ns.svc.cluster.local`) is namespace-wide; other
//! patterns are expanded against the known Services, or left out with a warning.
//! - A binding whose role is missing (same namespace, by `roleRef.name`, 1.4's `role`,
//!   or inline `actions`) converts to nothing, with a warning.
//! - Where RBAC was not enforced (see the mode), the binding's policy is left out; a
//!   namespace-wide role in a namespace where only some services were included is
//!   narrowed to those services.
//! - Subjects (OR-ed) × rules (OR-ed) become rules; subjects that are only a source
//!   share one rule's `from` list. `user: "*"` means everyone, authenticated or not,
//!   so it adds no `from` (whereas `principals: ["*"]` would demand mTLS);
//!   `user`/`names` → `principals` with `spiffe://` stripped; `source.principal` /
//!   `source.user` / `source.namespace` / `source.ip` / `request.auth.principal`
//!   properties → `principals` / `namespaces` / `ipBlocks` / `requestPrincipals`;
//!   `group(s)` → `when request.auth.claims[groups]`; other properties that are valid
//!   `when` keys (`request.auth.claims[...]`, `request.headers[...]`, ...) → `when`.
//!   Two legacy fields on the same attribute were AND-ed, so the second becomes a
//!   `when` condition. A property with no equivalent drops that subject (warning).
//! - Rule `methods`/`paths` (`*` = any, omitted), `hosts`, `ports` and their `not_`
//!   forms → `to.operation`; constraints with a valid `when` key → `when`;
//!   `destination.namespace` equal to the role's namespace is always true and dropped;
//!   `destination.labels[...]` and other destination attributes have no equivalent:
//!   the rule is left out (warning).

mod authn;
mod convert;
mod rbac;
mod rbac_rules;
mod resource;
pub mod types;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rbac;

pub use convert::{
    convert, convert_with, ConversionOutput, ConvertError, ConvertOptions, ConvertedResource,
    KnownService, LegacySource, DRY_RUN_ANNOTATION, SECURITY_API_VERSION,
};
pub use resource::{
    read_legacy_documents, LegacyBody, LegacyDocument, LegacyKind, LegacyReadError, LegacyResource,
    AUTHN_API_VERSION, RBAC_API_VERSION,
};
pub use types::{
    AccessRule, Constraint, EnforcementMode, Jwt, MtlsMode, MutualTls, OriginAuthenticationMethod,
    PeerAuthenticationMethod, Policy, PortSelector, PrincipalBinding, RbacConfig, RbacMode,
    RbacTarget, RoleRef, ServiceRole, ServiceRoleBinding, StringMatch, Subject, TargetSelector,
    TriggerRule,
};
