//! Finding and reading config files.

use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source} (check the path exists and is readable)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid UTF-8 text; Spar reads YAML or JSON files")]
    NotUtf8 { path: String },
    #[error("standard input: cannot read: {0}")]
    Stdin(std::io::Error),
}

/// One config text and the name diagnostics should use for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceText {
    /// The path as the user gave it (or found under a directory they gave), or `-`.
    pub name: String,
    pub text: String,
}

fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("yaml" | "yml" | "json")
    )
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n != "." && n != "..")
}

/// Expands `paths` into the config files to read: files as given, directories
/// recursively (sorted by path, hidden entries skipped), `-` kept as is.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(p.clone());
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|source| ConfigError::Read {
            path: p.display().to_string(),
            source,
        })?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            out.extend(found.into_iter().map(|(path, _)| path));
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The config files under `dir` (as [`collect_files`] finds them) with their metadata
/// (symlinks followed), taken before any is read.
pub(crate) fn collect_dir_with_metadata(
    dir: &Path,
) -> Result<Vec<(PathBuf, std::fs::Metadata)>, ConfigError> {
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) -> Result<(), ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    // One directory: sorting by name is sorting by path.
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        if is_hidden(&path) {
            continue;
        }
        let stat_err = |source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        };
        // The entry's type comes with the directory listing; only what can matter is
        // stat'ed, relative to the directory when it is no symlink (cheaper than a path
        // lookup). Symlinks are followed, as Kubernetes ConfigMap mounts are symlink farms.
        let meta = match entry.file_type() {
            Ok(t) if t.is_file() && !is_config_file(&path) => continue,
            Ok(t) if t.is_file() || t.is_dir() => entry.metadata().map_err(stat_err)?,
            _ => std::fs::metadata(&path).map_err(stat_err)?,
        };
        if meta.is_dir() {
            walk(&path, out)?;
        } else if is_config_file(&path) {
            out.push((path, meta));
        }
    }
    Ok(())
}

/// Reads every file named by `paths` (see [`collect_files`]); `-` reads standard input once.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceText>, ConfigError> {
    let mut out = Vec::new();
    let mut stdin_read = false;
    for p in collect_files(paths)? {
        if p.as_os_str() == "-" {
            if stdin_read {
                continue;
            }
            stdin_read = true;
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(ConfigError::Stdin)?;
            out.push(SourceText {
                name: "-".to_string(),
                text,
            });
            continue;
        }
        let name = p.display().to_string();
        let text = read_text(&p, &name)?;
        out.push(SourceText { name, text });
    }
    Ok(out)
}

/// One file's text; `name` is what an error calls it.
pub(crate) fn read_text(path: &Path, name: &str) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: name.to_string(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
        path: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_recursively_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/nested")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("b/nested/z.yml"), "a: 1").unwrap();
        std::fs::write(root.join("a.yaml"), "a: 1").unwrap();
        std::fs::write(root.join("c.json"), "{}").unwrap();
        std::fs::write(root.join("notes.txt"), "x").unwrap();
        std::fs::write(root.join(".git/x.yaml"), "x").unwrap();
        let files = collect_files(&[root.to_path_buf()]).unwrap();
        let rel: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, ["a.yaml", "b/nested/z.yml", "c.json"]);
    }

    #[test]
    fn explicit_files_are_read_whatever_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.txt");
        std::fs::write(&f, "kind: Gateway").unwrap();
        let src = read_sources(&[f]).unwrap();
        assert_eq!(src[0].text, "kind: Gateway");
    }

    #[test]
    fn missing_path_names_the_path() {
        let err = read_sources(&[PathBuf::from("/nonexistent/spar.yaml")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/spar.yaml"), "{err}");
    }
}
