//! Istio's defaults and how a written mesh config is laid over them.
//!
//! The defaults are those of Istio's built-in mesh config (what istiod uses when the
//! `istio` ConfigMap says nothing):
//!
//! | field | default |
//! | --- | --- |
//! | `enableTracing` | `true` |
//! | `accessLogFile`, `accessLogFormat` | `""` (no access log) |
//! | `accessLogEncoding` | `TEXT` |
//! | `enableEnvoyAccessLogService` | `false` |
//! | `protocolDetectionTimeout` | `0s` (sniffing never gives up on server-first protocols) |
//! | `ingressService` / `ingressClass` / `ingressControllerMode` | `istio-ingressgateway` / `istio` / `STRICT` |
//! | `trustDomain` | `cluster.local` |
//! | `enableAutoMtls` | `true` |
//! | `outboundTrafficPolicy.mode` | `ALLOW_ANY` |
//! | `inboundTrafficPolicy.mode` | `PASSTHROUGH` |
//! | `localityLbSetting.enabled` | `true` |
//! | `rootNamespace` | `istio-system` |
//! | `proxyListenPort` | `15001` |
//! | `connectTimeout` | `10s` |
//! | `default{Service,VirtualService,DestinationRule}ExportTo` | `["*"]` |
//! | `dnsRefreshRate` | `60s` |
//! | `h2UpgradePolicy` | `DO_NOT_UPGRADE` |
//! | `enablePrometheusMerge` | `true` |
//! | `pathNormalization.normalization` | `DEFAULT` (= `BASE`) |
//! | `extensionProviders` | `prometheus` (prometheus), `stackdriver` (stackdriver), `envoy` (file log to `/dev/stdout`) |
//! | `defaultConfig` | see [`default_proxy_config`] |
//!
//! `defaultHttpRetryPolicy` stays unset: without one, routes retry twice on
//! `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
//! ([`DEFAULT_RETRY_ON`], [`DEFAULT_RETRY_ATTEMPTS`]); that is the translator's
//! business, not a mesh-config value.
//!
//! Layering follows istiod: a written top-level field replaces the default, except
//! that `defaultConfig` and `defaultProviders` are merged field by field (and
//! `proxyMetadata` key by key), `extensionProviders` replace the built-in provider of
//! the same name and add the others, and `trustDomainAliases` are de-duplicated and
//! sorted. Unset fields inside `outboundTrafficPolicy`, `inboundTrafficPolicy`,
//! `localityLbSetting` and `pathNormalization` keep their defaults (protobuf merge).

use super::{
    AccessLogEncoding, AuthenticationPolicy, DefaultProviders, EnvoyFileAccessLog,
    ExtensionProvider, H2UpgradePolicy, InboundMode, InboundTrafficPolicy, IngressControllerMode,
    LocalityLbSetting, MeshConfig, NormalizationType, OutboundMode, OutboundTrafficPolicy,
    PathNormalization, PrometheusProvider, ProxyConfig, StackdriverProvider, TracerAddress,
    Tracing,
};

pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
pub const DEFAULT_CONNECT_TIMEOUT: &str = "10s";
pub const DEFAULT_PROTOCOL_DETECTION_TIMEOUT: &str = "0s";
pub const DEFAULT_DISCOVERY_ADDRESS: &str = "istiod.istio-system.svc:15012";
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
pub const DEFAULT_RETRY_ATTEMPTS: i32 = 2;
/// Providers every mesh has unless the config redefines the name.
pub const BUILTIN_PROVIDERS: [&str; 3] = ["prometheus", "stackdriver", "envoy"];

/// Istio's default `ProxyConfig`.
pub fn default_proxy_config() -> ProxyConfig {
    ProxyConfig {
        config_path: Some("./etc/istio/proxy".into()),
        binary_path: Some("/usr/local/bin/envoy".into()),
        service_cluster: Some("istio-proxy".into()),
        drain_duration: Some("45s".into()),
        termination_drain_duration: Some("5s".into()),
        proxy_admin_port: Some(15000),
        concurrency: Some(2),
        control_plane_auth_policy: Some(AuthenticationPolicy::MutualTls),
        discovery_address: Some(DEFAULT_DISCOVERY_ADDRESS.into()),
        tracing: Some(Tracing {
            zipkin: Some(TracerAddress {
                address: "zipkin.istio-system:9411".into(),
            }),
            ..Tracing::default()
        }),
        stat_name_length: Some(189),
        status_port: Some(15020),
        ..ProxyConfig::default()
    }
}

fn builtin_providers() -> Vec<ExtensionProvider> {
    vec![
        ExtensionProvider {
            name: "prometheus".into(),
            prometheus: Some(PrometheusProvider {}),
            ..ExtensionProvider::default()
        },
        ExtensionProvider {
            name: "stackdriver".into(),
            stackdriver: Some(StackdriverProvider::default()),
            ..ExtensionProvider::default()
        },
        ExtensionProvider {
            name: "envoy".into(),
            envoy_file_access_log: Some(EnvoyFileAccessLog {
                path: Some("/dev/stdout".into()),
                ..Default::default()
            }),
            ..ExtensionProvider::default()
        },
    ]
}

fn star() -> Vec<String> {
    vec!["*".to_string()]
}

impl MeshConfig {
    /// Istio's built-in mesh config.
    pub fn istio_defaults() -> MeshConfig {
        MeshConfig {
            enable_tracing: Some(true),
            access_log_file: Some(String::new()),
            access_log_encoding: Some(AccessLogEncoding::Text),
            access_log_format: Some(String::new()),
            enable_envoy_access_log_service: Some(false),
            protocol_detection_timeout: Some(DEFAULT_PROTOCOL_DETECTION_TIMEOUT.into()),
            ingress_service: Some("istio-ingressgateway".into()),
            ingress_controller_mode: Some(IngressControllerMode::Strict),
            ingress_class: Some("istio".into()),
            trust_domain: Some(DEFAULT_TRUST_DOMAIN.into()),
            enable_auto_mtls: Some(true),
            outbound_traffic_policy: Some(OutboundTrafficPolicy {
                mode: Some(OutboundMode::AllowAny),
                tls: None,
            }),
            inbound_traffic_policy: Some(InboundTrafficPolicy {
                mode: Some(InboundMode::Passthrough),
            }),
            locality_lb_setting: Some(LocalityLbSetting {
                enabled: Some(true),
                ..LocalityLbSetting::default()
            }),
            default_config: Some(default_proxy_config()),
            root_namespace: Some(DEFAULT_ROOT_NAMESPACE.into()),
            proxy_listen_port: Some(15001),
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT.into()),
            default_service_export_to: star(),
            default_virtual_service_export_to: star(),
            default_destination_rule_export_to: star(),
            dns_refresh_rate: Some("60s".into()),
            h2_upgrade_policy: Some(H2UpgradePolicy::DoNotUpgrade),
            enable_prometheus_merge: Some(true),
            path_normalization: Some(PathNormalization {
                normalization: Some(NormalizationType::Default),
            }),
            extension_providers: builtin_providers(),
            default_providers: Some(DefaultProviders::default()),
            ..MeshConfig::default()
        }
    }

    /// This config laid over [`MeshConfig::istio_defaults`], as istiod does (see the
    /// module documentation for the merge rules).
    pub fn effective(&self) -> MeshConfig {
        let d = MeshConfig::istio_defaults();
        let mut out = self.clone();
        macro_rules! fill {
            ($($field:ident),* $(,)?) => {$(
                if out.$field.is_none() {
                    out.$field = d.$field.clone();
                }
            )*};
        }
        fill!(
            enable_tracing,
            access_log_file,
            access_log_encoding,
            access_log_format,
            enable_envoy_access_log_service,
            protocol_detection_timeout,
            ingress_service,
            ingress_controller_mode,
            ingress_class,
            trust_domain,
            enable_auto_mtls,
            root_namespace,
            proxy_listen_port,
            connect_timeout,
            dns_refresh_rate,
            h2_upgrade_policy,
            enable_prometheus_merge,
        );
        for (mine, default) in [
            (
                &mut out.default_service_export_to,
                d.default_service_export_to,
            ),
            (
                &mut out.default_virtual_service_export_to,
                d.default_virtual_service_export_to,
            ),
            (
                &mut out.default_destination_rule_export_to,
                d.default_destination_rule_export_to,
            ),
        ] {
            if mine.is_empty() {
                *mine = default;
            }
        }
        let outbound = out
            .outbound_traffic_policy
            .get_or_insert_with(Default::default);
        outbound.mode.get_or_insert(OutboundMode::AllowAny);
        let inbound = out
            .inbound_traffic_policy
            .get_or_insert_with(Default::default);
        inbound.mode.get_or_insert(InboundMode::Passthrough);
        let locality = out.locality_lb_setting.get_or_insert_with(Default::default);
        locality.enabled.get_or_insert(true);
        let normalization = out.path_normalization.get_or_insert_with(Default::default);
        normalization
            .normalization
            .get_or_insert(NormalizationType::Default);
        out.default_config = Some(merge_proxy_config(
            default_proxy_config(),
            self.default_config.as_ref(),
        ));
        out.default_providers.get_or_insert_with(Default::default);
        out.extension_providers = merge_providers(d.extension_providers, &self.extension_providers);
        out.trust_domain_aliases.sort();
        out.trust_domain_aliases.dedup();
        out
    }
}

/// `over` laid field by field on `base`; `proxyMetadata` and `runtimeValues` merge by key.
pub fn merge_proxy_config(base: ProxyConfig, over: Option<&ProxyConfig>) -> ProxyConfig {
    let Some(over) = over else { return base };
    let mut out = over.clone();
    macro_rules! fill {
        ($($field:ident),* $(,)?) => {$(
            if out.$field.is_none() {
                out.$field = base.$field.clone();
            }
        )*};
    }
    fill!(
        config_path,
        binary_path,
        service_cluster,
        tracing_service_name,
        drain_duration,
        discovery_address,
        discovery_refresh_delay,
        zipkin_address,
        statsd_udp_address,
        envoy_metrics_service_address,
        proxy_admin_port,
        availability_zone,
        control_plane_auth_policy,
        custom_config_file,
        stat_name_length,
        concurrency,
        proxy_bootstrap_template_path,
        interception_mode,
        sds,
        envoy_access_log_service,
        envoy_metrics_service,
        status_port,
        gateway_topology,
        termination_drain_duration,
        mesh_id,
        readiness_probe,
        proxy_stats_matcher,
        hold_application_until_proxy_starts,
        image,
        private_key_provider,
        proxy_headers,
        file_flush_interval,
        file_flush_min_size_kb,
        stats_compression,
        connection_settings,
    );
    // A service cluster and a tracing service name are one protobuf oneof: writing
    // either replaces the default of the other.
    if over.tracing_service_name.is_some() && over.service_cluster.is_none() {
        out.service_cluster = None;
    }
    out.tracing = match (base.tracing, &over.tracing) {
        (base, None) => base,
        (None, Some(t)) => Some(t.clone()),
        (Some(b), Some(t)) => Some(merge_tracing(b, t)),
    };
    for (k, v) in base.proxy_metadata {
        out.proxy_metadata.entry(k).or_insert(v);
    }
    for (k, v) in base.runtime_values {
        out.runtime_values.entry(k).or_insert(v);
    }
    if out.extra_stat_tags.is_empty() {
        out.extra_stat_tags = base.extra_stat_tags;
    }
    if out.ca_certificates_pem.is_empty() {
        out.ca_certificates_pem = base.ca_certificates_pem;
    }
    out
}

/// Protobuf merge of `Tracing`: the tracer is a oneof, so a written tracer replaces the
/// default one, and an unwritten one keeps it.
fn merge_tracing(base: Tracing, over: &Tracing) -> Tracing {
    let mut out = over.clone();
    let has_tracer = over.zipkin.is_some()
        || over.lightstep.is_some()
        || over.datadog.is_some()
        || over.stackdriver.is_some()
        || over.open_census_agent.is_some();
    if !has_tracer {
        out.zipkin = base.zipkin;
        out.lightstep = base.lightstep;
        out.datadog = base.datadog;
        out.stackdriver = base.stackdriver;
        out.open_census_agent = base.open_census_agent;
    }
    out.max_path_tag_length = out.max_path_tag_length.or(base.max_path_tag_length);
    out.sampling = out.sampling.or(base.sampling);
    out.tls_settings = out.tls_settings.or(base.tls_settings);
    out.enable_istio_tags = out.enable_istio_tags.or(base.enable_istio_tags);
    for (k, v) in base.custom_tags {
        out.custom_tags.entry(k).or_insert(v);
    }
    out
}

fn merge_providers(
    mut base: Vec<ExtensionProvider>,
    written: &[ExtensionProvider],
) -> Vec<ExtensionProvider> {
    for p in written {
        match base.iter_mut().find(|b| b.name == p.name) {
            Some(existing) => *existing = p.clone(),
            None => base.push(p.clone()),
        }
    }
    base
}
