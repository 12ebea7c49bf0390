//! The Kubernetes objects a mesh reads: Service, Endpoints, EndpointSlice, Namespace, ServiceAccount, Deployment.
