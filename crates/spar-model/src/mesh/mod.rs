//! MeshConfig (`mesh.yaml`): mesh-wide settings with Istio's defaults.
//!
//! The file form is Istio's `MeshConfig` in YAML with the proto's JSON (camelCase)
//! names; the Kubernetes form is the `istio` ConfigMap whose `data.mesh` holds the same
//! YAML as a string. Both read into [`MeshConfig`] as written; [`MeshConfig::effective`]
//! lays it over Istio's defaults (see [`defaults`] for the values and merge rules), and
//! [`validate_mesh_config`] checks it. Unknown keys are reported as
//! [`Notice::UnknownField`] warnings, not errors.

use crate::yaml::{self, DeError, Mark, Node, Notice, ScalarStyle, YamlError};
use crate::FieldPath;

mod config;
pub mod defaults;
mod providers;
mod proxy;
mod validate;

#[cfg(test)]
mod tests;

pub use config::{
    AccessLogEncoding, CertificateData, ConfigSource, DefaultProviders, H2UpgradePolicy, HttpRetry,
    InboundMode, InboundTrafficPolicy, IngressControllerMode, LocalityDistribute, LocalityFailover,
    LocalityLbSetting, MeshCa, MeshConfig, NormalizationType, OutboundMode, OutboundTrafficPolicy,
    PathNormalization, ServiceSettings, ServiceSettingsValues, TcpKeepalive, TlsConfig,
    TlsProtocol,
};
pub use defaults::{default_proxy_config, BUILTIN_PROVIDERS};
pub use providers::{
    EnvoyExtAuthzGrpc, EnvoyExtAuthzHttp, EnvoyFileAccessLog, EnvoyOtelAls, ExtensionProvider,
    GrpcAccessLogService, GrpcService, HttpHeader, HttpService, LogFormat, OpenCensusProvider,
    OpenTelemetryProvider, PrometheusProvider, Provider, RequestBody, ResourceDetectors,
    SdsProvider, ServiceAttributeEnrichment, StackdriverLogging, StackdriverProvider,
    StatsdProvider, TraceContextOption, TracingService, ZipkinProvider,
};
pub use proxy::{
    AuthenticationPolicy, CustomTag, ForwardClientCertDetails, InterceptionMode, LiteralTag,
    NamedTagSource, ProxyConfig, ProxyImage, ProxyStatsMatcher, RemoteService, Topology,
    TracerAddress, Tracing, TracingServiceName,
};
pub use validate::validate_mesh_config;

/// Why a mesh config could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeshConfigError {
    #[error("mesh config: {0}")]
    Yaml(#[from] YamlError),
    #[error("mesh config: line {line}: {0}", line = .0.mark.line)]
    Shape(#[from] DeError),
    #[error("mesh config: expected one YAML document, found {0}")]
    MultipleDocuments(usize),
    #[error("ConfigMap has no `data.mesh` key (the mesh config is read from there)")]
    MissingMeshKey,
    #[error("ConfigMap `data.mesh` must be a string holding the mesh config YAML")]
    MeshNotAString,
}

/// A mesh config as read, with the warnings found while reading.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMesh {
    pub config: MeshConfig,
    /// Unknown and repeated keys. Lines are those of the text read (for a ConfigMap
    /// read with [`mesh_from_configmap`], of the ConfigMap's file when the value is a
    /// block scalar).
    pub notices: Vec<Notice>,
}

/// Reads a `mesh.yaml` file. An empty file is an empty config (all defaults).
pub fn parse_mesh_config(text: &str) -> Result<ParsedMesh, MeshConfigError> {
    read_text(text, FieldPath::root())
}

/// Reads the `data.mesh` string of the `istio` ConfigMap (the same YAML as
/// `mesh.yaml`). Paths in notices and errors start at `data.mesh`.
pub fn mesh_from_configmap_data(text: &str) -> Result<ParsedMesh, MeshConfigError> {
    read_text(text, FieldPath::root().field("data").field("mesh"))
}

/// Reads the mesh config from a whole `istio` ConfigMap document. When `data.mesh` is
/// written as a block scalar (`mesh: |`), lines in notices and errors are shifted to
/// point into the ConfigMap's own file.
pub fn mesh_from_configmap(root: &Node) -> Result<ParsedMesh, MeshConfigError> {
    let value = root
        .get("data")
        .and_then(|d| d.get("mesh"))
        .ok_or(MeshConfigError::MissingMeshKey)?;
    let scalar = value.as_scalar().ok_or(MeshConfigError::MeshNotAString)?;
    // A block scalar's node starts at its first non-blank content line; leading blank
    // lines are kept in the text as newlines. Other styles fold lines, so there is no
    // faithful mapping and positions stay relative to the string.
    let leading_blank =
        u32::try_from(scalar.text.bytes().take_while(|b| *b == b'\n').count()).unwrap_or(0);
    let offset = match scalar.style {
        ScalarStyle::Block => value.mark.line.saturating_sub(1 + leading_blank),
        _ => 0,
    };
    match mesh_from_configmap_data(&scalar.text) {
        Ok(mut parsed) => {
            for n in &mut parsed.notices {
                match n {
                    Notice::UnknownField { mark, .. } | Notice::DuplicateKey { mark, .. } => {
                        shift(mark, offset)
                    }
                }
            }
            Ok(parsed)
        }
        Err(MeshConfigError::Yaml(mut e)) => {
            shift(&mut e.mark, offset);
            Err(MeshConfigError::Yaml(e))
        }
        Err(MeshConfigError::Shape(mut e)) => {
            shift(&mut e.mark, offset);
            Err(MeshConfigError::Shape(e))
        }
        Err(e) => Err(e),
    }
}

fn shift(mark: &mut Mark, lines: u32) {
    if mark.line > 0 {
        mark.line += lines;
    }
}

fn read_text(text: &str, base: FieldPath) -> Result<ParsedMesh, MeshConfigError> {
    let docs = yaml::parse_documents(text)?;
    let mut notices = Vec::new();
    let config = match docs.as_slice() {
        [] => MeshConfig::default(),
        [doc] => yaml::from_node_at(&doc.root, base, Some(&mut notices))?,
        many => return Err(MeshConfigError::MultipleDocuments(many.len())),
    };
    Ok(ParsedMesh { config, notices })
}
