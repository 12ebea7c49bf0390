//! MeshConfig (`mesh.yaml`): mesh-wide settings with Istio's defaults.
