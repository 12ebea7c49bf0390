//! The 2019 APIs (authentication.istio.io v1alpha1, rbac.istio.io v1alpha1) and their conversion to today's.
