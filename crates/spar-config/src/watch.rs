//! Watching a config directory: debounced file-system events, then a rescan of the
//! directory through [`FileStore`], which keeps the last good version of each file.
//!
//! Rescanning (instead of trusting event paths) keeps this correct across editors' rename
//! dances, Kubernetes ConfigMap symlink swaps and events the OS dropped. The rescan is
//! cheap: it stats every file but reads only those whose inode, size or times moved, parses
//! only those whose text changed, and assembles the rest from the store's cached parses.

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
    /// Keep parsed files without their positioned YAML trees (see
    /// [`FileStore::dropping_source_trees`]); for a control plane, which serves the config
    /// and never asks for a field's line. Off by default.
    pub drop_source_trees: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(100),
            load: LoadOptions::default(),
            drop_source_trees: false,
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
    if opts.drop_source_trees {
        store = store.dropping_source_trees();
    }
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
    let initial = match store.sync_dir(&dir)? {
        Some(u) => u,
        None => store.in_force(),
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
                let started = std::time::Instant::now();
                match store.sync_dir(&dir) {
                    Ok(Some(update)) => {
                        let stats = store.last_sync();
                        tracing::debug!(
                            files = stats.files,
                            read = stats.read,
                            parsed = stats.parsed,
                            elapsed_us =
                                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                            "config watch: synced"
                        );
                        on_update(update);
                    }
                    Ok(None) => {}
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

/// Every config file under `dir` with its text (or why it could not be read).
pub fn read_dir(dir: &Path) -> Result<Vec<FileRead>, ConfigError> {
    let files: Vec<PathBuf> = collect_files(&[dir.to_path_buf()])?;
    Ok(files
        .into_iter()
        .map(|p| {
            let name = p.display().to_string();
            let text = crate::sources::read_text(&p, &name);
            (name, text)
        })
        .collect())
}
