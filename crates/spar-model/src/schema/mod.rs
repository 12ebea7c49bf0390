//! Validation of YAML trees against Istio's CRD (OpenAPI v3) schemas.
