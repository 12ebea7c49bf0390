//! The mesh trust bundle: the CA's own root(s) plus extra roots the operator adds
//! (MeshConfig `caCertificates`), which change while the CA runs. Adding the next root
//! here before the CA switches to it is how a root is rotated without a failed handshake.

use std::sync::{PoisonError, RwLock};

/// Roots beyond the CA's own, replaced as a whole when the mesh config changes.
#[derive(Debug, Default)]
pub struct ExtraRoots {
    pem: RwLock<String>,
}

impl ExtraRoots {
    /// Replaces the extra roots with `pems` (each a PEM certificate); true when they changed.
    pub fn set<'a>(&self, pems: impl IntoIterator<Item = &'a str>) -> bool {
        let mut next = String::new();
        for p in pems {
            let p = p.trim();
            if !p.is_empty() {
                next.push_str(p);
                next.push('\n');
            }
        }
        let mut cur = self.pem.write().unwrap_or_else(PoisonError::into_inner);
        if *cur == next {
            return false;
        }
        *cur = next;
        true
    }

    /// The extra roots as one PEM text (empty when none).
    pub fn pem(&self) -> String {
        self.pem
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `ca_roots` followed by the extra roots: what peers are checked against.
    pub fn bundle(&self, ca_roots: &str) -> String {
        let mut out = ca_roots.trim_end().to_string();
        out.push('\n');
        out.push_str(&self.pem());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_follow_the_ca_roots_and_report_changes() {
        let x = ExtraRoots::default();
        assert_eq!(x.bundle("A\n"), "A\n");
        assert!(x.set(["B", " ", "C\n"]));
        assert!(!x.set(["B", "C"]), "the same roots are no change");
        assert_eq!(x.bundle("A"), "A\nB\nC\n");
        assert!(x.set([]));
        assert_eq!(x.bundle("A"), "A\n");
    }
}
