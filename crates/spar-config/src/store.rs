//! The last good version of every config file.
//!
//! Each file is validated on its own when its text changes. A file whose new text has errors
//! keeps its last good text in force (the whole file: nothing is half-applied) and its errors
//! are kept for reporting; a file that was never good contributes nothing. The served
//! [`ConfigSet`] is loaded from the good texts of all files together, so cross-file rules
//! (duplicates, MeshConfig, the 2019 APIs) still apply.

use std::collections::BTreeMap;

use spar_model::{ConfigSet, Diagnostic, LoadOptions, Severity};

use crate::ConfigError;

/// One file as read: its name and its text, or why it could not be read.
pub type FileRead = (String, Result<String, ConfigError>);

#[derive(Debug, Default)]
struct FileEntry {
    /// The text last read, good or bad; a change against it triggers validation.
    seen: Option<String>,
    /// The text in force.
    good: Option<String>,
    /// Errors of `seen` when it is bad.
    errors: Vec<Diagnostic>,
}

/// What is in force after a change.
#[derive(Debug)]
pub struct Update {
    /// Loaded from the good version of every file.
    pub config: ConfigSet,
    /// Files whose latest version is invalid (or unreadable), with why; the last good version
    /// of each (if there was one) is in `config`.
    pub bad_files: BTreeMap<String, Vec<Diagnostic>>,
    /// Files whose text changed in this update (added, edited or removed).
    pub changed: Vec<String>,
}

/// Per-file last-good bookkeeping.
#[derive(Debug)]
pub struct FileStore {
    opts: LoadOptions,
    files: BTreeMap<String, FileEntry>,
}

impl FileStore {
    pub fn new(opts: LoadOptions) -> FileStore {
        FileStore {
            opts,
            files: BTreeMap::new(),
        }
    }

    /// Takes the current contents of every file (a file not listed was removed) and returns
    /// what is in force, or `None` when no file changed.
    pub fn sync(&mut self, present: Vec<(String, Result<String, ConfigError>)>) -> Option<Update> {
        let mut changed = Vec::new();
        let names: std::collections::BTreeSet<&String> = present.iter().map(|(n, _)| n).collect();
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
        for (name, read) in present {
            let entry = self.files.entry(name.clone()).or_default();
            match read {
                Ok(text) => {
                    if entry.seen.as_deref() == Some(text.as_str()) {
                        continue;
                    }
                    let alone = ConfigSet::load([(name.as_str(), text.as_str())], &self.opts);
                    entry.errors = alone
                        .diagnostics()
                        .iter()
                        .filter(|d| d.is_error())
                        .cloned()
                        .collect();
                    if entry.errors.is_empty() {
                        entry.good = Some(text.clone());
                    }
                    entry.seen = Some(text);
                }
                Err(e) => {
                    // Unreadable now (mid-write, permissions): keep what was in force.
                    let message = e.to_string();
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
        if changed.is_empty() {
            return None;
        }
        Some(self.current(changed))
    }

    fn current(&self, changed: Vec<String>) -> Update {
        let config = ConfigSet::load(
            self.files
                .iter()
                .filter_map(|(n, e)| e.good.as_deref().map(|t| (n.as_str(), t))),
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
