//! Cross-resource analysis of Istio configuration, as `istioctl analyze` does it.
