//! Istio's CSR API messages (`istio.v1.auth`, security/v1alpha1/ca.proto), written out by
//! hand so that building Spar needs no protoc. Field numbers follow Istio's proto:
//! `csr = 1`, `validity_duration = 3`, `metadata = 4`; `cert_chain = 1`.

/// gRPC path of the one method.
pub const CREATE_CERTIFICATE_PATH: &str =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";
/// Fully-qualified service name.
pub const SERVICE_NAME: &str = "istio.v1.auth.IstioCertificateService";

/// A workload's certificate request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded PKCS#10 certificate request.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested validity in seconds; 0 means the CA's default.
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Opaque node metadata (WorkloadName, WorkloadIP, ClusterID); accepted and ignored.
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<prost_types::Struct>,
}

/// The signed chain: leaf first, root last, one PEM certificate per element.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}
