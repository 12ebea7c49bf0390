//! The last good version of every config file, kept parsed.
//!
//! Each file is parsed on its own ([`ParsedFile`]) when its text changes, and that parse is
//! both its validation and what is kept: a file is good when assembling it alone gives no
//! error. A file whose new text has errors keeps its last good parse in force (the whole
//! file: nothing is half-applied) and its errors are kept for reporting; a file that was
//! never good contributes nothing. Every update [`ConfigSet::assemble`]s the good parses of
//! all files in file-name order, so cross-file rules (duplicates, MeshConfig, the 2019 APIs)
//! still apply and the result equals [`ConfigSet::load`] of the good texts; only changed
//! files are parsed again.
//!
//! [`FileStore::sync_dir`] also avoids reading files that did not change: a file whose
//! [`Stamp`] (inode, size, mtime and ctime with nanoseconds) is the one it had when last read
//! is not read again. The directory tree itself is walked every time, which is what keeps
//! this right across editors' rename dances and ConfigMap symlink swaps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use spar_model::config_set::ParsedFile;
use spar_model::{ConfigSet, Diagnostic, LoadOptions, Severity};

use crate::sources::{collect_dir_with_metadata, read_text};
use crate::stamp::{Stamp, RACY};
use crate::ConfigError;

/// One file as read: its name and its text, or why it could not be read.
pub type FileRead = (String, Result<String, ConfigError>);

#[derive(Debug, Default)]
struct FileEntry {
    /// The text last read, good or bad; a change against it triggers parsing.
    seen: Option<String>,
    /// The file's stamp when `seen` was read, if it can be trusted to tell a change.
    stamp: Option<Stamp>,
    /// The version in force, parsed.
    good: Option<ParsedFile>,
    /// Errors of `seen` when it is bad.
    errors: Vec<Diagnostic>,
}

/// What is in force after a change.
#[derive(Debug)]
pub struct Update {
    /// Assembled from the good version of every file.
    pub config: ConfigSet,
    /// Files whose latest version is invalid (or unreadable), with why; the last good version
    /// of each (if there was one) is in `config`.
    pub bad_files: BTreeMap<String, Vec<Diagnostic>>,
    /// Files whose text changed in this update (added, edited or removed).
    pub changed: Vec<String>,
}

/// What the last sync did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Config files present.
    pub files: usize,
    /// Files read (the others' stamps showed no change).
    pub read: usize,
    /// Files parsed (read with a text that differs from the last one seen).
    pub parsed: usize,
}

/// What a scan learnt about one present file.
enum Seen {
    /// Its stamp is the one it had when last read.
    Unchanged,
    /// Read now, with the stamp taken before reading (if trustworthy).
    Read(Result<String, ConfigError>, Option<Stamp>),
}

/// Per-file last-good bookkeeping.
#[derive(Debug)]
pub struct FileStore {
    opts: LoadOptions,
    drop_source_trees: bool,
    racy: Duration,
    files: BTreeMap<String, FileEntry>,
    stats: SyncStats,
}

impl FileStore {
    pub fn new(opts: LoadOptions) -> FileStore {
        FileStore {
            opts,
            drop_source_trees: false,
            racy: RACY,
            files: BTreeMap::new(),
            stats: SyncStats::default(),
        }
    }

    /// Keeps parsed files without their positioned YAML trees
    /// ([`ParsedFile::drop_source_trees`]): for a store whose config is served, not analysed
    /// (a control plane). Diagnostics are made before the trees go, so they keep their lines.
    pub fn dropping_source_trees(mut self) -> FileStore {
        self.drop_source_trees = true;
        self
    }

    /// What the last [`FileStore::sync`] or [`FileStore::sync_dir`] did.
    pub fn last_sync(&self) -> SyncStats {
        self.stats
    }

    /// Takes the current contents of every file (a file not listed was removed) and returns
    /// what is in force, or `None` when no file changed.
    pub fn sync(&mut self, present: Vec<FileRead>) -> Option<Update> {
        let read = present.len();
        let present = present
            .into_iter()
            .map(|(name, text)| (name, Seen::Read(text, None)))
            .collect();
        self.apply(present, read)
    }

    /// Walks `dir` (as [`crate::collect_files`] does), reads the files that may have changed
    /// and returns what is in force, or `None` when no file changed. Fails only when the
    /// directory tree cannot be walked; a file that cannot be read is a bad file.
    pub fn sync_dir(&mut self, dir: &Path) -> Result<Option<Update>, ConfigError> {
        let now = SystemTime::now();
        let found = collect_dir_with_metadata(dir)?;
        let mut read = 0;
        let mut present = Vec::with_capacity(found.len());
        for (path, meta) in found {
            let name = path.display().to_string();
            let stamp = Stamp::of(&meta, now, self.racy);
            let known = self.files.get(&name).and_then(|e| e.stamp);
            if stamp.is_some() && known == stamp {
                present.push((name, Seen::Unchanged));
                continue;
            }
            read += 1;
            let text = read_text(&path, &name);
            present.push((name, Seen::Read(text, stamp)));
        }
        Ok(self.apply(present, read))
    }

    fn apply(&mut self, present: Vec<(String, Seen)>, read: usize) -> Option<Update> {
        let mut changed = Vec::new();
        let names: BTreeSet<&String> = present.iter().map(|(n, _)| n).collect();
        let removed: Vec<String> = self
            .files
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for n in removed {
            self.files.remove(&n);
            changed.push(n);
        }
        self.stats = SyncStats {
            files: present.len(),
            read,
            parsed: 0,
        };
        let mut to_parse: Vec<(String, String, Option<Stamp>)> = Vec::new();
        for (name, seen) in present {
            let Seen::Read(read, stamp) = seen else {
                continue;
            };
            let entry = self.files.entry(name.clone()).or_default();
            match (read, stamp) {
                (Ok(text), stamp) => {
                    if entry.seen.as_deref() == Some(text.as_str()) {
                        entry.stamp = stamp;
                        continue;
                    }
                    to_parse.push((name.clone(), text, stamp));
                }
                (Err(e), _) => {
                    // Unreadable now (mid-write, permissions): keep what was in force.
                    let message = e.to_string();
                    entry.stamp = None;
                    if entry.errors.first().map(|d| &d.message) == Some(&message) {
                        continue;
                    }
                    entry.seen = None;
                    entry.errors = vec![Diagnostic {
                        severity: Severity::Error,
                        code: None,
                        file: Some(name.clone()),
                        line: None,
                        resource: None,
                        path: None,
                        message,
                    }];
                }
            }
            changed.push(name);
        }
        self.parse(to_parse);
        if changed.is_empty() {
            return None;
        }
        Some(self.update(changed))
    }

    /// Parses changed texts (on every core) and files each as good or bad.
    fn parse(&mut self, texts: Vec<(String, String, Option<Stamp>)>) {
        self.stats.parsed = texts.len();
        let pairs: Vec<(&str, &str)> = texts
            .iter()
            .map(|(n, t, _)| (n.as_str(), t.as_str()))
            .collect();
        let parsed = ParsedFile::parse_all(&pairs, &self.opts);
        for ((name, text, stamp), mut file) in texts.into_iter().zip(parsed) {
            // Good means: no error when assembled alone (so a broken mesh config in the
            // `istio` ConfigMap, or a 2019 resource that cannot be converted, counts too).
            let errors: Vec<Diagnostic> = ConfigSet::assemble(std::iter::once(&file), &self.opts)
                .diagnostics()
                .iter()
                .filter(|d| d.is_error())
                .cloned()
                .collect();
            let entry = self.files.entry(name).or_default();
            if errors.is_empty() {
                if self.drop_source_trees {
                    file.drop_source_trees();
                }
                entry.good = Some(file);
            }
            entry.errors = errors;
            entry.seen = Some(text);
            entry.stamp = stamp;
        }
    }

    /// What is in force now (`changed` empty).
    pub fn in_force(&self) -> Update {
        self.update(Vec::new())
    }

    fn update(&self, changed: Vec<String>) -> Update {
        let config = ConfigSet::assemble(
            self.files.values().filter_map(|e| e.good.as_ref()),
            &self.opts,
        );
        let bad_files = self
            .files
            .iter()
            .filter(|(_, e)| !e.errors.is_empty())
            .map(|(n, e)| (n.clone(), e.errors.clone()))
            .collect();
        Update {
            config,
            bad_files,
            changed,
        }
    }
}

#[cfg(test)]
mod tests;
