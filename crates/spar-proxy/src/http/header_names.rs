//! Names of the headers the request path reads or sets on every request.
//!
//! A `&'static str` passed to a `HeaderMap` method is parsed into a header name on every
//! call (http's `from_static` runs at run time outside a `const`): about 570 instructions
//! each, four times per request. As constants they are parsed once, at compile time.

use http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");
