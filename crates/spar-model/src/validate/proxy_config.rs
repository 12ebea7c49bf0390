//! Webhook rules for `ProxyConfig`. Concurrency ranges are the schema's; what is left
//! is the selector and the image type, which becomes part of an image tag.

use super::common::{check_selector, warn};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::ProxyConfig;

/// Docker tags allow at most this many characters.
const MAX_TAG_LEN: usize = 128;

pub fn check(spec: &ProxyConfig, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    if let Some(sel) = &spec.selector {
        check_selector(
            &mut out,
            &root.field("selector").field("matchLabels"),
            &sel.match_labels,
            "ProxyConfig",
        );
    }
    if let Some(kind) = spec.image.as_ref().and_then(|i| i.image_type.as_deref()) {
        // Istio appends the type to the proxy image tag (`1.24.0-distroless`), so
        // anything a tag cannot hold makes the image unpullable.
        let tag_safe = kind.len() <= MAX_TAG_LEN
            && kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !tag_safe {
            warn(
                &mut out,
                root.field("image").field("imageType"),
                format!("imageType {kind:?} cannot be part of an image tag: use default, debug, distroless or another published variant name"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::istio::types::ProxyConfig;
    use crate::validate::common::testing::{errors, run_cases, spec, warnings, CTX};

    #[test]
    fn selector_and_image() {
        run_cases::<ProxyConfig>(
            |s| check(s, &CTX),
            &[
                ("full", "{concurrency: 2, selector: {matchLabels: {app: a}}, image: {imageType: distroless}}", None),
                ("custom image type", "{image: {imageType: centos}}", None),
                ("bad selector", "{selector: {matchLabels: {'a b': c}}}", Some("label key")),
                ("bad selector value", "{selector: {matchLabels: {app: '.a'}}}", Some("label value")),
            ],
        );
        let warned = |y: &str| {
            let d = check(&spec::<ProxyConfig>(y), &CTX);
            assert!(errors(&d).is_empty(), "{d:?}");
            warnings(&d)
        };
        assert!(warned("{selector: {matchLabels: {}}}")
            .iter()
            .any(|w| w.contains("no labels")));
        assert!(warned("{image: {imageType: 'debug:latest'}}")
            .iter()
            .any(|w| w.contains("image tag")));
    }
}
