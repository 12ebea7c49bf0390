//! Small builders shared by every resource kind: `Any` packing, durations, addresses,
//! the ADS config source, and the DestinationRule / host lookups translation needs.

use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion,
    ConfigSource, SocketAddress,
};
use envoy_types::pb::google::protobuf::{Any, Duration, UInt32Value};

/// Packs a message into an `Any` with its `type.googleapis.com/...` URL.
pub fn any<M: prost::Message + prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// An Istio duration string (`10s`, `1m30s`); `None` when absent or unreadable (the
/// model's validation has already reported unreadable ones).
pub fn parse_duration(text: Option<&str>) -> Option<Duration> {
    text.and_then(|t| spar_model::duration::parse_duration(t).ok())
        .map(duration)
}

pub fn seconds(s: i64) -> Duration {
    Duration {
        seconds: s,
        nanos: 0,
    }
}

pub fn u32v(v: u32) -> UInt32Value {
    UInt32Value { value: v }
}

/// A non-negative `i32` from the model as a `u32` wrapper.
pub fn u32v_i(v: Option<i32>) -> Option<UInt32Value> {
    v.and_then(|v| u32::try_from(v).ok()).map(u32v)
}

pub fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// "Ask the same ADS stream", as every dynamic resource Spar sends refers to others.
pub fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// Istio's cluster name: `<direction>|<port>|<subset>|<host>`.
pub fn cluster_name(direction: &str, port: u32, subset: &str, host: &str) -> String {
    format!("{direction}|{port}|{subset}|{host}")
}

pub fn outbound(port: u32, subset: &str, host: &str) -> String {
    cluster_name("outbound", port, subset, host)
}

pub const PASSTHROUGH: &str = "PassthroughCluster";
pub const BLACKHOLE: &str = "BlackHoleCluster";
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
pub const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";

/// Marks routes with the VirtualService they came from, as istiod does
/// (`filter_metadata.istio.config: /apis/networking.istio.io/v1alpha3/namespaces/<ns>/virtual-service/<name>`),
/// so that config dumps and `spar ctl explain` can name the rule's source.
pub fn with_source(
    mut routes: Vec<envoy_types::pb::envoy::config::route::v3::Route>,
    source: &spar_model::Resource,
) -> Vec<envoy_types::pb::envoy::config::route::v3::Route> {
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let path = format!(
        "/apis/networking.istio.io/v1alpha3/namespaces/{}/virtual-service/{}",
        source.meta.namespace, source.meta.name
    );
    for r in &mut routes {
        let mut fields = std::collections::HashMap::new();
        fields.insert(
            ISTIO_CONFIG_KEY.to_string(),
            Value {
                kind: Some(Kind::StringValue(path.clone())),
            },
        );
        let mut metadata = Metadata::default();
        metadata
            .filter_metadata
            .insert("istio".to_string(), Struct { fields });
        r.metadata = Some(metadata);
    }
    routes
}

/// The key under `filter_metadata.istio` that names a route's source VirtualService.
pub const ISTIO_CONFIG_KEY: &str = "config";
