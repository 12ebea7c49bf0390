use super::*;
use crate::yaml::parse_documents;
use crate::{FieldPath, Severity};

const FULL: &str = r#"
# A mesh.yaml touching most of MeshConfig.
proxyListenPort: 15001
proxyInboundListenPort: 15006
connectTimeout: 5s
protocolDetectionTimeout: 100ms
tcpKeepalive: {probes: 3, time: 2h, interval: 75s}
ingressClass: istio
ingressService: istio-ingressgateway
ingressControllerMode: STRICT
ingressSelector: ingressgateway
enableTracing: true
accessLogFile: /dev/stdout
accessLogEncoding: JSON
accessLogFormat: '{"start": "%START_TIME%", "code": "%RESPONSE_CODE%"}'
enableEnvoyAccessLogService: false
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  drainDuration: 45s
  terminationDrainDuration: 5s
  concurrency: 2
  holdApplicationUntilProxyStarts: true
  statusPort: 15020
  proxyMetadata:
    ISTIO_META_DNS_CAPTURE: "true"
    ISTIO_META_DNS_AUTO_ALLOCATE: "true"
  tracing:
    sampling: 1.0
    zipkin: {address: zipkin.istio-system:9411}
    customTags:
      cluster: {literal: {value: east}}
      user: {header: {name: x-user, defaultValue: anonymous}}
  proxyStatsMatcher:
    inclusionPrefixes: [cluster.outbound]
    inclusionRegexps: [".*circuit_breakers.*"]
  gatewayTopology: {numTrustedProxies: 1, forwardClientCertDetails: SANITIZE_SET}
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
inboundTrafficPolicy:
  mode: PASSTHROUGH
enableAutoMtls: true
trustDomain: example.org
trustDomainAliases: [old.example.org, cluster.local]
defaultServiceExportTo: ["*"]
defaultVirtualServiceExportTo: ["."]
defaultDestinationRuleExportTo: ["*"]
rootNamespace: istio-system
localityLbSetting:
  enabled: true
  distribute:
  - from: us-west/zone1/*
    to:
      "us-west/zone1/*": 80
      "us-west/zone2/*": 20
dnsRefreshRate: 60s
h2UpgradePolicy: DO_NOT_UPGRADE
serviceSettings:
- settings: {clusterLocal: true}
  hosts: ["*.kube-system.svc.cluster.local"]
enablePrometheusMerge: true
extensionProviders:
- name: otel
  opentelemetry:
    service: opentelemetry-collector.observability.svc.cluster.local
    port: 4317
    resourceDetectors: {environment: {}}
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411, maxTagLength: 256, traceContextOption: USE_B3_WITH_W3C_PROPAGATION}
- name: ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    timeout: 250ms
    pathPrefix: /check
    failOpen: false
    statusOnError: "503"
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToUpstreamOnAllow: [x-ext-authz-check-result]
    headersToDownstreamOnDeny: [x-ext-authz-check-result]
    includeAdditionalHeadersInCheck: {x-from: mesh}
- name: ext-authz-grpc
  envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000, timeout: 1s, failOpen: true}
- name: otel-als
  envoyOtelAls: {service: otel.observability.svc.cluster.local, port: 4317, logName: mesh}
- name: json-file
  envoyFileAccessLog:
    path: /dev/stdout
    logFormat:
      labels: {code: "%RESPONSE_CODE%", path: "%REQ(:PATH)%"}
- name: http-als
  envoyHttpAls: {service: als.istio-system.svc.cluster.local, port: 9000, logName: http}
- name: tcp-als
  envoyTcpAls: {service: als.istio-system.svc.cluster.local, port: 9000}
- name: dd
  datadog: {service: datadog-agent.datadog.svc.cluster.local, port: 8126}
- name: sw
  skywalking: {service: tracing.istio-system.svc.cluster.local, port: 11800}
- name: statsd
  statsd: {service: statsd.monitoring.svc.cluster.local, port: 8125, prefix: mesh}
defaultProviders:
  metrics: [prometheus, statsd]
  tracing: [otel]
  accessLogging: [envoy, json-file]
pathNormalization:
  normalization: MERGE_SLASHES
defaultHttpRetryPolicy:
  attempts: 3
  perTryTimeout: 2s
  retryOn: connect-failure,refused-stream,503
  retryRemoteLocalities: true
meshMTLS: {minProtocolVersion: TLSV1_3}
tlsDefaults: {ecdhCurves: [P-256]}
discoverySelectors:
- matchLabels: {istio-discovery: enabled}
"#;

fn parse(text: &str) -> ParsedMesh {
    parse_mesh_config(text).unwrap()
}

#[test]
fn full_mesh_yaml_reads_without_warnings_and_round_trips() {
    let parsed = parse(FULL);
    assert!(parsed.notices.is_empty(), "{:?}", parsed.notices);
    let m = &parsed.config;
    assert_eq!(
        m.outbound_traffic_policy.as_ref().unwrap().mode,
        Some(OutboundMode::RegistryOnly)
    );
    assert_eq!(m.access_log_encoding, Some(AccessLogEncoding::Json));
    let pc = m.default_config.as_ref().unwrap();
    assert_eq!(pc.proxy_metadata["ISTIO_META_DNS_CAPTURE"], "true");
    assert_eq!(pc.hold_application_until_proxy_starts, Some(true));
    assert_eq!(
        pc.tracing.as_ref().unwrap().custom_tags["user"]
            .header
            .as_ref()
            .unwrap()
            .name,
        "x-user"
    );
    assert_eq!(m.extension_providers.len(), 11);
    let authz = m.extension_providers[2]
        .envoy_ext_authz_http
        .as_ref()
        .unwrap();
    assert_eq!(authz.status_on_error.as_deref(), Some("503"));
    assert!(matches!(
        m.extension_providers[0].provider(),
        Some(Provider::OpenTelemetry(_))
    ));
    assert_eq!(
        m.locality_lb_setting.as_ref().unwrap().distribute[0].to["us-west/zone2/*"],
        20
    );
    assert_eq!(
        m.mesh_mtls.as_ref().unwrap().min_protocol_version,
        Some(TlsProtocol::TlsV1_3)
    );
    assert_eq!(
        m.default_http_retry_policy.as_ref().unwrap().attempts,
        Some(3)
    );
    assert_eq!(
        m.discovery_selectors[0].match_labels["istio-discovery"],
        "enabled"
    );
    let diags = validate_mesh_config(m, &FieldPath::root());
    assert!(
        diags.is_empty(),
        "{:?}",
        diags.iter().map(ToString::to_string).collect::<Vec<_>>()
    );

    // Out through serde-saphyr, back through our reader: the same config.
    let yaml = serde_saphyr::to_string(m).unwrap();
    let again = parse(&yaml);
    assert!(again.notices.is_empty(), "{:?}\n{yaml}", again.notices);
    assert_eq!(&again.config, m, "{yaml}");
    // And as JSON, with Istio's field names.
    let json = serde_json::to_value(m).unwrap();
    assert_eq!(json["meshMTLS"]["minProtocolVersion"], "TLSV1_3");
    assert_eq!(
        json["extensionProviders"][1]["zipkin"]["traceContextOption"],
        "USE_B3_WITH_W3C_PROPAGATION"
    );
    assert_eq!(
        json["defaultConfig"]["proxyStatsMatcher"]["inclusionPrefixes"][0],
        "cluster.outbound"
    );
    let from_json: MeshConfig = serde_json::from_value(json).unwrap();
    assert_eq!(&from_json, m);
}

#[test]
fn empty_config_takes_istio_defaults() {
    let m = parse("").config;
    assert_eq!(m, MeshConfig::default());
    let e = m.effective();
    assert_eq!(e.trust_domain.as_deref(), Some("cluster.local"));
    assert_eq!(e.root_namespace.as_deref(), Some("istio-system"));
    assert_eq!(
        e.outbound_traffic_policy.unwrap().mode,
        Some(OutboundMode::AllowAny)
    );
    assert_eq!(e.enable_auto_mtls, Some(true));
    assert_eq!(e.connect_timeout.as_deref(), Some("10s"));
    assert_eq!(e.protocol_detection_timeout.as_deref(), Some("0s"));
    assert_eq!(e.enable_tracing, Some(true));
    assert_eq!(e.access_log_encoding, Some(AccessLogEncoding::Text));
    assert_eq!(e.default_service_export_to, ["*"]);
    assert_eq!(e.locality_lb_setting.unwrap().enabled, Some(true));
    let names: Vec<_> = e
        .extension_providers
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, BUILTIN_PROVIDERS);
    let pc = e.default_config.unwrap();
    assert_eq!(
        pc.discovery_address.as_deref(),
        Some("istiod.istio-system.svc:15012")
    );
    assert_eq!(pc.drain_duration.as_deref(), Some("45s"));
    assert_eq!(pc.status_port, Some(15020));
    assert_eq!(pc.concurrency, Some(2));
    assert_eq!(
        MeshConfig::istio_defaults().effective(),
        MeshConfig::istio_defaults()
    );
    assert!(validate_mesh_config(&MeshConfig::istio_defaults(), &FieldPath::root()).is_empty());
}

#[test]
fn written_values_are_merged_over_defaults_like_istiod() {
    let m = parse(
        "accessLogFile: /dev/stdout\noutboundTrafficPolicy: {}\nlocalityLbSetting: {failover: [{from: us-east, to: eu-west}]}\ndefaultConfig:\n  concurrency: 0\n  proxyMetadata: {A: b}\n  tracing: {sampling: 10}\nextensionProviders:\n- {name: envoy, envoyFileAccessLog: {path: /var/log/access.log}}\n- {name: mine, prometheus: {}}\ntrustDomainAliases: [b, a, b]\n",
    )
    .config
    .effective();
    assert_eq!(m.access_log_file.as_deref(), Some("/dev/stdout"));
    assert_eq!(
        m.outbound_traffic_policy.unwrap().mode,
        Some(OutboundMode::AllowAny)
    );
    let lb = m.locality_lb_setting.unwrap();
    assert_eq!((lb.enabled, lb.failover.len()), (Some(true), 1));
    let pc = m.default_config.unwrap();
    assert_eq!(pc.concurrency, Some(0));
    assert_eq!(pc.drain_duration.as_deref(), Some("45s"));
    assert_eq!(pc.proxy_metadata["A"], "b");
    let tracing = pc.tracing.unwrap();
    assert_eq!(tracing.sampling, Some(10.0));
    assert_eq!(tracing.zipkin.unwrap().address, "zipkin.istio-system:9411");
    let names: Vec<_> = m
        .extension_providers
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["prometheus", "stackdriver", "envoy", "mine"]);
    let envoy = m.extension_providers[2]
        .envoy_file_access_log
        .as_ref()
        .unwrap();
    assert_eq!(envoy.path.as_deref(), Some("/var/log/access.log"));
    assert_eq!(m.trust_domain_aliases, ["a", "b"]);
}

#[test]
fn unknown_fields_warn_and_bad_enums_fail_with_a_path() {
    let parsed = parse("defaultConfig:\n  discoveryAdress: x:1\ntrustDomain: a\n");
    assert_eq!(parsed.notices.len(), 1);
    assert!(
        matches!(&parsed.notices[0], Notice::UnknownField { path, mark, .. } if path.to_string() == "defaultConfig.discoveryAdress" && mark.line == 2)
    );

    let err = parse_mesh_config("outboundTrafficPolicy:\n  mode: ALLOW_ALL\n").unwrap_err();
    match err {
        MeshConfigError::Shape(e) => {
            assert_eq!(e.path.to_string(), "outboundTrafficPolicy.mode");
            assert_eq!(e.mark.line, 2);
            assert!(e.message.contains("REGISTRY_ONLY"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        "accessLogEncoding: XML",
        "pathNormalization: {normalization: MERGE}",
        "h2UpgradePolicy: ALWAYS",
        "inboundTrafficPolicy: {mode: LOCAL}",
        "meshMTLS: {minProtocolVersion: TLSV1_0}",
    ] {
        assert!(
            matches!(parse_mesh_config(bad), Err(MeshConfigError::Shape(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        parse_mesh_config("a: 1\n---\nb: 2\n"),
        Err(MeshConfigError::MultipleDocuments(2))
    ));
}

#[test]
fn configmap_form() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |-\n    accessLogFile: /dev/stdout\n    defaultConfig:\n      discoveryAddress: istiod.istio-system.svc:15012\n    enableAutoMtls: false\n    typo: 1\n  meshNetworks: 'networks: {}'\n";
    let docs = parse_documents(cm).unwrap();
    let parsed = mesh_from_configmap(&docs[0].root).unwrap();
    assert_eq!(parsed.config.enable_auto_mtls, Some(false));
    assert_eq!(
        parsed.config.access_log_file.as_deref(),
        Some("/dev/stdout")
    );
    match &parsed.notices[..] {
        [Notice::UnknownField { path, mark, .. }] => {
            assert_eq!(path.to_string(), "data.mesh.typo");
            assert_eq!(mark.line, 12, "points into the ConfigMap file");
        }
        other => panic!("{other:?}"),
    }
    let data = docs[0]
        .root
        .get("data")
        .unwrap()
        .get("mesh")
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(
        mesh_from_configmap_data(data).unwrap().config,
        parsed.config
    );

    let no_mesh = parse_documents("data: {meshNetworks: x}\n").unwrap();
    assert_eq!(
        mesh_from_configmap(&no_mesh[0].root),
        Err(MeshConfigError::MissingMeshKey)
    );
    let blank_first = parse_documents("data:\n  mesh: |\n\n    typo: 1\n").unwrap();
    match &mesh_from_configmap(&blank_first[0].root).unwrap().notices[..] {
        [Notice::UnknownField { mark, .. }] => assert_eq!(mark.line, 4),
        other => panic!("{other:?}"),
    }
    let not_str = parse_documents("data: {mesh: {a: 1}}\n").unwrap();
    assert_eq!(
        mesh_from_configmap(&not_str[0].root),
        Err(MeshConfigError::MeshNotAString)
    );
}

/// Each rule with a valid and an invalid case: (mesh yaml, expected finding path, severity).
#[test]
fn validation_rules() {
    use Severity::{Error, Warning};
    let cases: &[(&str, Option<(&str, Severity)>)] = &[
        ("connectTimeout: 1s", None),
        ("connectTimeout: 1m30s", None),
        ("connectTimeout: 10", Some(("connectTimeout", Error))),
        ("connectTimeout: 0s", Some(("connectTimeout", Error))),
        ("connectTimeout: -1s", Some(("connectTimeout", Error))),
        ("protocolDetectionTimeout: 0s", None),
        ("protocolDetectionTimeout: 1.5ms", None),
        ("protocolDetectionTimeout: fast", Some(("protocolDetectionTimeout", Error))),
        ("tcpKeepalive: {time: 1h2m3.5s}", None),
        ("tcpKeepalive: {interval: 75}", Some(("tcpKeepalive.interval", Error))),
        ("defaultConfig: {drainDuration: 500ms}", None),
        ("defaultConfig: {drainDuration: 45}", Some(("defaultConfig.drainDuration", Error))),
        ("defaultConfig: {terminationDrainDuration: 5x}", Some(("defaultConfig.terminationDrainDuration", Error))),
        ("proxyListenPort: 15001", None),
        ("proxyListenPort: 0", Some(("proxyListenPort", Error))),
        ("proxyListenPort: 70000", Some(("proxyListenPort", Error))),
        ("proxyHttpPort: 0", None),
        ("defaultConfig: {statusPort: 65536}", Some(("defaultConfig.statusPort", Error))),
        ("defaultConfig: {proxyAdminPort: 15000}", None),
        ("defaultConfig: {discoveryAddress: 'istiod:15012'}", None),
        ("defaultConfig: {discoveryAddress: '[::1]:15012'}", None),
        ("defaultConfig: {discoveryAddress: istiod}", Some(("defaultConfig.discoveryAddress", Error))),
        ("defaultConfig: {discoveryAddress: 'istiod:0'}", Some(("defaultConfig.discoveryAddress", Error))),
        ("defaultConfig: {concurrency: -1}", Some(("defaultConfig.concurrency", Error))),
        ("defaultConfig: {tracing: {sampling: 100}}", None),
        ("defaultConfig: {tracing: {sampling: 101}}", Some(("defaultConfig.tracing.sampling", Error))),
        ("defaultConfig: {proxyStatsMatcher: {inclusionRegexps: ['(']}}", Some(("defaultConfig.proxyStatsMatcher.inclusionRegexps[0]", Error))),
        ("trustDomain: example.org", None),
        ("trustDomain: 'bad domain'", Some(("trustDomain", Error))),
        ("trustDomainAliases: [ok.org, 'b@d']", Some(("trustDomainAliases[1]", Error))),
        ("rootNamespace: mesh-root", None),
        ("rootNamespace: Mesh_Root", Some(("rootNamespace", Error))),
        ("defaultServiceExportTo: ['.', other-ns]", None),
        ("defaultServiceExportTo: ['*', other-ns]", Some(("defaultServiceExportTo", Error))),
        ("defaultVirtualServiceExportTo: [Bad_NS]", Some(("defaultVirtualServiceExportTo[0]", Error))),
        ("{accessLogEncoding: JSON, accessLogFormat: '{\"code\": \"%RESPONSE_CODE%\"}'}", None),
        ("{accessLogEncoding: JSON, accessLogFormat: '%RESPONSE_CODE%'}", Some(("accessLogFormat", Error))),
        ("{accessLogEncoding: TEXT, accessLogFormat: '%RESPONSE_CODE%'}", None),
        ("extensionProviders: [{name: p, prometheus: {}}]", None),
        ("extensionProviders: [{name: '', prometheus: {}}]", Some(("extensionProviders[0].name", Error))),
        ("extensionProviders: [{name: p, prometheus: {}}, {name: p, stackdriver: {}}]", Some(("extensionProviders[1].name", Error))),
        ("extensionProviders: [{name: p}]", Some(("extensionProviders[0]", Error))),
        ("extensionProviders: [{name: p, prometheus: {}, stackdriver: {}}]", Some(("extensionProviders[0]", Error))),
        ("extensionProviders: [{name: z, zipkin: {service: zipkin.ns.svc.cluster.local, port: 9411}}]", None),
        ("extensionProviders: [{name: z, zipkin: {service: ns/zipkin.ns.svc.cluster.local, port: 9411}}]", None),
        ("extensionProviders: [{name: z, zipkin: {port: 9411}}]", Some(("extensionProviders[0].zipkin.service", Error))),
        ("extensionProviders: [{name: z, zipkin: {service: zipkin}}]", Some(("extensionProviders[0].zipkin.port", Error))),
        ("extensionProviders: [{name: z, zipkin: {service: zipkin, port: 99999}}]", Some(("extensionProviders[0].zipkin.port", Error))),
        ("extensionProviders: [{name: s, statsd: {service: statsd}}]", None),
        ("extensionProviders: [{name: a, envoyExtAuthzHttp: {service: authz, port: 80, statusOnError: '99'}}]", Some(("extensionProviders[0].envoyExtAuthzHttp.statusOnError", Error))),
        ("extensionProviders: [{name: a, envoyExtAuthzHttp: {service: authz, port: 80, pathPrefix: check}}]", Some(("extensionProviders[0].envoyExtAuthzHttp.pathPrefix", Error))),
        ("extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: authz, port: 80, timeout: 2}}]", Some(("extensionProviders[0].envoyExtAuthzGrpc.timeout", Error))),
        ("extensionProviders: [{name: f, envoyFileAccessLog: {path: /dev/stdout, logFormat: {text: x, labels: {a: b}}}}]", Some(("extensionProviders[0].envoyFileAccessLog.logFormat", Error))),
        ("defaultProviders: {metrics: [prometheus], accessLogging: [envoy], tracing: [stackdriver]}", None),
        ("defaultProviders: {tracing: [jaeger]}", Some(("defaultProviders.tracing[0]", Warning))),
        ("{extensionProviders: [{name: p2, prometheus: {}}], defaultProviders: {tracing: [p2]}}", Some(("defaultProviders.tracing[0]", Warning))),
        ("{extensionProviders: [{name: z, zipkin: {service: z, port: 1}}], defaultProviders: {tracing: [z]}}", None),
        ("localityLbSetting: {distribute: [{from: 'us-west/*', to: {'us-west/*': 80, 'us-east/*': 20}}]}", None),
        ("localityLbSetting: {distribute: [{from: 'us-west/*', to: {'us-west/*': 80}}]}", Some(("localityLbSetting.distribute[0].to", Error))),
        ("localityLbSetting: {distribute: [{from: 'us-*/a', to: {'us-west/*': 100}}]}", Some(("localityLbSetting.distribute[0].from", Error))),
        ("localityLbSetting: {failover: [{from: us-east, to: us-west}]}", None),
        ("localityLbSetting: {failover: [{from: us-east, to: us-east}]}", Some(("localityLbSetting.failover[0]", Error))),
        ("localityLbSetting: {failover: [{from: a, to: b}], distribute: [{from: '*', to: {'*': 100}}]}", Some(("localityLbSetting", Error))),
        ("localityLbSetting: {failoverPriority: [topology.kubernetes.io/region]}", None),
        ("defaultHttpRetryPolicy: {attempts: 2, perTryTimeout: 1s, retryOn: '5xx,gateway-error,503'}", None),
        ("defaultHttpRetryPolicy: {attempts: -1}", Some(("defaultHttpRetryPolicy.attempts", Error))),
        ("defaultHttpRetryPolicy: {perTryTimeout: 0s}", Some(("defaultHttpRetryPolicy.perTryTimeout", Error))),
        ("defaultHttpRetryPolicy: {retryOn: 'connect-failure,sometimes'}", Some(("defaultHttpRetryPolicy.retryOn", Error))),
        ("serviceSettings: [{hosts: ['*.svc.cluster.local']}]", None),
        ("serviceSettings: [{hosts: ['a..b']}]", Some(("serviceSettings[0].hosts[0]", Error))),
        ("caCertificates: [{pem: x}]", None),
        ("caCertificates: [{pem: x, spiffeBundleUrl: y}]", Some(("caCertificates[0]", Error))),
        ("ca: {address: ca:443, requestTimeout: 5s}", None),
        ("ca: {requestTimeout: 5s}", Some(("ca.address", Error))),
    ];
    for (src, want) in cases {
        let parsed = parse_mesh_config(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(parsed.notices.is_empty(), "{src}: {:?}", parsed.notices);
        let diags = validate_mesh_config(&parsed.config, &FieldPath::root());
        let shown: Vec<_> = diags.iter().map(ToString::to_string).collect();
        match want {
            None => assert!(diags.is_empty(), "{src}: {shown:?}"),
            Some((path, sev)) => {
                assert_eq!(diags.len(), 1, "{src}: {shown:?}");
                assert_eq!(
                    diags[0].path.as_ref().map(ToString::to_string).as_deref(),
                    Some(*path),
                    "{src}"
                );
                assert_eq!(diags[0].severity, *sev, "{src}");
            }
        }
    }
}

#[test]
fn findings_are_prefixed_with_the_given_path() {
    let parsed = mesh_from_configmap_data("connectTimeout: soon\n").unwrap();
    let diags = validate_mesh_config(&parsed.config, &FieldPath::parse("data.mesh"));
    assert_eq!(
        diags[0].path.as_ref().unwrap().to_string(),
        "data.mesh.connectTimeout"
    );
    assert!(diags[0].message.contains("500ms"), "{}", diags[0]);
}
