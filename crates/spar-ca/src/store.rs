//! The generated root, kept across restarts in `--data-dir` so that certificates issued
//! before a restart still verify after it.
//!
//! Layout: `<data-dir>/ca/root-cert.pem` (0644) and `<data-dir>/ca/ca-key.pem` (0600), in a
//! directory of mode 0700. A key file or directory that others can read is refused rather
//! than used, with the `chmod` that fixes it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::authority::{to_pem, Ca, CaError, CA_KEY_FILE, ROOT_CERT_FILE};

/// Sub-directory of the data directory that holds the CA.
pub const CA_SUBDIR: &str = "ca";

/// Why the persisted CA could not be read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("creating {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is accessible to other users (mode {mode:o}); run `chmod {want:o} {path}`")]
    UnsafeMode { path: PathBuf, mode: u32, want: u32 },
    #[error("{path} exists but {missing} does not; restore it or remove the directory to start a new root")]
    Incomplete { path: PathBuf, missing: PathBuf },
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// Loads the CA persisted under `data_dir`, or generates a new root and persists it.
pub fn load_or_create(data_dir: &Path, trust_domain: &str) -> Result<Ca, StoreError> {
    let dir = data_dir.join(CA_SUBDIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    check_private(&dir, 0o700)?;
    let key = dir.join(CA_KEY_FILE);
    let cert = dir.join(ROOT_CERT_FILE);
    match (key.exists(), cert.exists()) {
        (true, true) => {
            check_private(&key, 0o600)?;
            Ok(Ca::load_self_signed(&dir, trust_domain)?)
        }
        (false, false) => {
            let ca = Ca::generate(trust_domain)?;
            // Key first: a root certificate without its key would be unusable.
            write_new(&key, ca.key_pem().as_bytes(), 0o600)?;
            write_new(&cert, to_pem(ca.root()).as_bytes(), 0o644)?;
            tracing::info!(dir = %dir.display(), "generated a new self-signed mesh root");
            Ok(ca)
        }
        (true, false) => Err(StoreError::Incomplete {
            path: key,
            missing: cert,
        }),
        (false, true) => Err(StoreError::Incomplete {
            path: cert,
            missing: key,
        }),
    }
}

/// Refuses a path whose group/other permission bits exceed `want`'s (which has none).
fn check_private(path: &Path, want: u32) -> Result<(), StoreError> {
    let mode = fs::metadata(path)
        .map_err(|source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::UnsafeMode {
            path: path.to_path_buf(),
            mode,
            want,
        });
    }
    Ok(())
}

/// Writes a file that must not exist yet, with `mode` from the moment it is created, through
/// a temporary name so a crash never leaves half a key.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_root_with_safe_modes_and_reloads_same_key() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let first = load_or_create(&data, "cluster.local").unwrap();
        let dir = data.join(CA_SUBDIR);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(ROOT_CERT_FILE)), 0o644);

        let second = load_or_create(&data, "cluster.local").unwrap();
        assert_eq!(first.root(), second.root());
        assert_eq!(first.key_pem(), second.key_pem());
    }

    #[test]
    fn refuses_key_readable_by_others() {
        let tmp = tempfile::tempdir().unwrap();
        load_or_create(tmp.path(), "cluster.local").unwrap();
        let key = tmp.path().join(CA_SUBDIR).join(CA_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(tmp.path(), "cluster.local").unwrap_err();
        assert!(matches!(err, StoreError::UnsafeMode { .. }), "{err}");
    }

    #[test]
    fn refuses_half_a_ca() {
        let tmp = tempfile::tempdir().unwrap();
        load_or_create(tmp.path(), "cluster.local").unwrap();
        fs::remove_file(tmp.path().join(CA_SUBDIR).join(ROOT_CERT_FILE)).unwrap();
        let err = load_or_create(tmp.path(), "cluster.local").unwrap_err();
        assert!(matches!(err, StoreError::Incomplete { .. }), "{err}");
    }
}
