//! Counters the proxy reads (for `/stats` and readiness) without locking: connects,
//! disconnects, ACKs and NACKs per type, and whether a stream is up right now.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::resources::WARMING_ORDER;

/// What the xDS client has done so far. Shared with the proxy through an `Arc`.
#[derive(Debug, Default)]
pub struct ClientStats {
    connects: AtomicU64,
    disconnects: AtomicU64,
    connected: AtomicBool,
    fell_back_to_sotw: AtomicBool,
    // Indexed like `WARMING_ORDER`; the last slot counts any other type.
    acks: [AtomicU64; 6],
    nacks: [AtomicU64; 6],
}

fn slot(type_url: &str) -> usize {
    WARMING_ORDER
        .iter()
        .position(|t| *t == type_url)
        .unwrap_or(WARMING_ORDER.len())
}

impl ClientStats {
    /// Streams opened to the control plane.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Streams that ended (error, server close or shutdown) after being opened.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Whether a stream to the control plane is open now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether the server refused Delta xDS and the client speaks state of the world.
    pub fn fell_back_to_sotw(&self) -> bool {
        self.fell_back_to_sotw.load(Ordering::Relaxed)
    }

    /// Responses of `type_url` accepted.
    pub fn acks(&self, type_url: &str) -> u64 {
        self.acks[slot(type_url)].load(Ordering::Relaxed)
    }

    /// Responses of `type_url` rejected.
    pub fn nacks(&self, type_url: &str) -> u64 {
        self.nacks[slot(type_url)].load(Ordering::Relaxed)
    }

    pub(crate) fn on_connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
    }

    pub(crate) fn on_disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        self.connected.store(false, Ordering::Relaxed);
    }

    pub(crate) fn on_fallback(&self) {
        self.fell_back_to_sotw.store(true, Ordering::Relaxed);
    }

    pub(crate) fn on_ack(&self, type_url: &str) {
        self.acks[slot(type_url)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn on_nack(&self, type_url: &str) {
        self.nacks[slot(type_url)].fetch_add(1, Ordering::Relaxed);
    }
}
