//! Bearer tokens read from a file that may change while the CA runs (`spar up` adds a line
//! per workload it starts): the file is re-read when its modification time or size changes,
//! and a version that fails to parse is reported and ignored, keeping the last good tokens.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use crate::auth::{AuthError, Authenticator, Caller, StaticTokens};
use crate::spiffe::SpiffeId;

/// File identity used to notice changes.
type Stamp = (Option<SystemTime>, u64);

/// A [`StaticTokens`] kept in step with a token file.
pub struct TokenFile {
    path: PathBuf,
    trust_domain: String,
    state: RwLock<(Stamp, StaticTokens)>,
}

impl TokenFile {
    /// Reads the file once; a missing or malformed file is an error at start-up.
    pub fn load(path: &Path, trust_domain: &str) -> Result<Self, AuthError> {
        let stamp = stamp(path);
        let tokens = StaticTokens::load(path, trust_domain)?;
        Ok(Self {
            path: path.to_path_buf(),
            trust_domain: trust_domain.to_string(),
            state: RwLock::new((stamp, tokens)),
        })
    }

    /// How many tokens are in force.
    pub fn len(&self) -> usize {
        self.state.read().unwrap_or_else(|e| e.into_inner()).1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn refresh(&self) {
        let now = stamp(&self.path);
        if self.state.read().unwrap_or_else(|e| e.into_inner()).0 == now {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.0 == now {
            return;
        }
        state.0 = now;
        match StaticTokens::load(&self.path, &self.trust_domain) {
            Ok(tokens) => {
                tracing::info!(path = %self.path.display(), tokens = tokens.len(), "CA token file reloaded");
                state.1 = tokens;
            }
            Err(e) => {
                tracing::warn!(error = %e, "CA token file changed but cannot be read; keeping the previous tokens");
            }
        }
    }
}

fn stamp(path: &Path) -> Stamp {
    match fs::metadata(path) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

impl Authenticator for TokenFile {
    fn name(&self) -> &'static str {
        "token-file"
    }

    fn authenticate(&self, caller: &Caller<'_>) -> Result<SpiffeId, AuthError> {
        self.refresh();
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .authenticate(caller)
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::{MetadataMap, MetadataValue};

    use super::*;

    fn ask(auth: &TokenFile, token: &str) -> Result<SpiffeId, AuthError> {
        let mut md = MetadataMap::new();
        md.insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        auth.authenticate(&Caller {
            metadata: &md,
            peer_certs: None,
        })
    }

    #[test]
    fn picks_up_new_tokens_and_keeps_the_last_good_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        fs::write(&path, "a default/a\n").unwrap();
        let auth = TokenFile::load(&path, "cluster.local").unwrap();
        assert!(ask(&auth, "a").is_ok());
        assert!(matches!(ask(&auth, "b"), Err(AuthError::UnknownToken)));

        // A longer file: the size changes even if the mtime granularity hides the write.
        fs::write(&path, "a default/a\nb default/b\n").unwrap();
        assert_eq!(ask(&auth, "b").unwrap().service_account(), "b");

        fs::write(&path, "a default/a\nb default/b\nbroken line here\n").unwrap();
        assert_eq!(ask(&auth, "b").unwrap().service_account(), "b");
        assert_eq!(auth.len(), 2);
    }
}
