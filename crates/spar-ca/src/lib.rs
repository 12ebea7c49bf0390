//! The mesh CA: signs SPIFFE X.509-SVIDs for workloads through Istio's CSR API
//! (`istio.v1.auth.IstioCertificateService/CreateCertificate`).
//!
//! It exists so that every proxy in a Spar mesh gets a short-lived certificate for exactly
//! the identity it proved, from a root that is generated on first start or plugged in from
//! Istio's `cacerts` layout.
//!
//! - [`authority`]: the root/intermediate and key, and `sign_csr`.
//! - [`bundle`]: extra trust anchors (MeshConfig `caCertificates`) beside the CA's root.
//! - [`store`]: the generated root persisted in the data directory with safe file modes.
//! - [`csr`]: reading a CSR and checking its own signature.
//! - [`describe`]: serial, SPIFFE ID, validity and fingerprint of a certificate, for `spar ctl`.
//! - [`spiffe`]: `spiffe://<td>/ns/<ns>/sa/<sa>` identities.
//! - [`svid`]: verifying an X.509-SVID chain, with a typed error per refusal; [`tls`]:
//!   the same as rustls verifiers for both ends of mesh mTLS.
//! - [`auth`]: who is calling (bearer tokens, client certificates; a trait for more);
//!   [`token_file`] keeps tokens in step with a file.
//! - [`proto`] and [`server`]: the gRPC service over TLS; [`client`]: the workload's side.

pub mod auth;
pub mod authority;
pub mod bundle;
pub mod client;
pub mod csr;
pub mod describe;
pub mod proto;
pub mod server;
pub mod spiffe;
pub mod store;
pub mod svid;
pub mod tls;
pub mod token_file;

/// The certificate and time types of the API, so callers need no direct pki-types dependency.
pub use rustls_pki_types::{CertificateDer, UnixTime};

pub use auth::{AnyOf, AuthError, Authenticator, Caller, PeerCertificate, StaticTokens};
pub use authority::{Ca, CaError, CertChain};
pub use server::{CaService, TtlPolicy};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use svid::{verify_svid, SvidError};
pub use token_file::TokenFile;
