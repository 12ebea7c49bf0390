//! Watching a config directory: debounced file-system events, then a rescan of the
//! directory through [`FileStore`], which keeps the last good version of each file.
//!
//! Rescanning (instead of trusting event paths) keeps this correct across editors' rename
//! dances, Kubernetes ConfigMap symlink swaps and events the OS dropped; only files whose
//! text changed are validated again.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use spar_model::LoadOptions;

use crate::store::{FileRead, FileStore, Update};
use crate::{collect_files, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source} (does the directory exist? on Linux, is fs.inotify.max_user_watches large enough?)")]
    Watch { path: String, source: notify::Error },
    #[error(transparent)]
    Read(#[from] ConfigError),
    #[error("cannot start the watcher thread: {0}")]
    Thread(std::io::Error),
}

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Quiet time after the last event before the directory is read again, so a burst of
    /// writes (an editor save, `kubectl cp`, a `git checkout`) is applied once.
    pub debounce: Duration,
    pub load: LoadOptions,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(100),
            load: LoadOptions::default(),
        }
    }
}

/// A running watch; dropping it stops watching.
pub struct DirWatcher {
    // Dropping the notify watcher closes the event channel, which ends the thread.
    _watcher: notify::RecommendedWatcher,
}

/// Reads `dir` now and returns what is in force, then calls `on_update` from a background
/// thread after every debounced change that changed some file.
pub fn watch_dir(
    dir: &Path,
    opts: WatchOptions,
    mut on_update: impl FnMut(Update) + Send + 'static,
) -> Result<(DirWatcher, Update), WatchError> {
    let dir = dir.to_path_buf();
    let mut store = FileStore::new(opts.load.clone());
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Reads (ours included) must not trigger another read.
        if let Ok(ev) = ev {
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
        }
        let _ = tx.send(());
    })
    .map_err(|source| WatchError::Watch {
        path: dir.display().to_string(),
        source,
    })?;
    // Watch before the first read, so a change made while reading is not lost.
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Watch {
            path: dir.display().to_string(),
            source,
        })?;
    let initial = match store.sync(read_dir(&dir)?) {
        Some(u) => u,
        None => store_empty(&opts.load),
    };
    let debounce = opts.debounce;
    std::thread::Builder::new()
        .name("spar-config-watch".to_string())
        .spawn(move || {
            while rx.recv().is_ok() {
                loop {
                    match rx.recv_timeout(debounce) {
                        Ok(()) => continue,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                match read_dir(&dir) {
                    Ok(present) => {
                        if let Some(update) = store.sync(present) {
                            on_update(update);
                        }
                    }
                    // The directory itself went away or became unreadable: keep serving
                    // what is in force until it comes back.
                    Err(e) => {
                        tracing::warn!(error = %e, "config watch: keeping the config in force")
                    }
                }
            }
        })
        .map_err(WatchError::Thread)?;
    Ok((DirWatcher { _watcher: watcher }, initial))
}

fn store_empty(opts: &LoadOptions) -> Update {
    Update {
        config: spar_model::ConfigSet::load(std::iter::empty(), opts),
        bad_files: Default::default(),
        changed: Vec::new(),
    }
}

/// Every config file under `dir` with its text (or why it could not be read).
pub fn read_dir(dir: &Path) -> Result<Vec<FileRead>, ConfigError> {
    let files: Vec<PathBuf> = collect_files(&[dir.to_path_buf()])?;
    Ok(files
        .into_iter()
        .map(|p| {
            let name = p.display().to_string();
            let text = std::fs::read(&p)
                .map_err(|source| ConfigError::Read {
                    path: name.clone(),
                    source,
                })
                .and_then(|b| {
                    String::from_utf8(b).map_err(|_| ConfigError::NotUtf8 { path: name.clone() })
                });
            (name, text)
        })
        .collect())
}
