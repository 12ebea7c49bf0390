//! Istio resource types generated from Istio's CRD schemas (see `tools/gen_istio_model.py`).
