//! The bridge from the xDS client to the proxy's [`Store`]: each response is converted and
//! applied as a whole (or refused with the reason, which the client sends back as the
//! NACK's `error_detail`), and the proxy says which routes and endpoints it needs next.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use spar_xds::client::{TypeUpdate, XdsHandler};

use crate::config::Store;

/// Applies xDS updates to a [`Store`].
#[derive(Debug)]
pub struct ProxyHandler {
    store: Arc<Store>,
    connected: AtomicBool,
}

impl ProxyHandler {
    pub fn new(store: Arc<Store>) -> ProxyHandler {
        ProxyHandler {
            store,
            connected: AtomicBool::new(false),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

impl XdsHandler for ProxyHandler {
    fn apply(&self, update: &TypeUpdate) -> Result<(), String> {
        let resources: Vec<Any> = update
            .resources
            .iter()
            .map(|r| Any {
                type_url: r.resource.type_url.clone(),
                value: r.resource.value.clone(),
            })
            .collect();
        let result = self.store.apply(
            &update.type_url,
            &resources,
            &update.removed,
            update.full_state,
        );
        match &result {
            Ok(()) => tracing::debug!(
                type_url = %update.type_url,
                version = %update.version,
                resources = resources.len(),
                removed = update.removed.len(),
                "xDS update applied"
            ),
            Err(e) => tracing::warn!(type_url = %update.type_url, "xDS update refused: {e}"),
        }
        result
    }

    fn wanted(&self, type_url: &str) -> Option<BTreeSet<String>> {
        self.store.load().wanted(type_url)
    }

    fn on_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }
}
