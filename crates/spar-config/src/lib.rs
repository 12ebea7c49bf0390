//! Reading Istio configuration from the file system.
//!
//! Paths may name files or directories (walked recursively, in a stable order);
//! `-` reads standard input. Only `.yaml`, `.yml` and `.json` files inside
//! directories are read; a file named explicitly is read whatever its extension.
//! Parsing and validation are `spar-model`'s job; this crate finds and reads text, and
//! (`watch`, `store`) keeps a watched directory's last good config in force, re-reading and
//! re-parsing only the files that changed.

mod sources;
mod stamp;
pub mod store;
pub mod watch;

pub use sources::{collect_files, read_sources, ConfigError, SourceText};
pub use store::{FileStore, SyncStats, Update};
pub use watch::{watch_dir, DirWatcher, WatchError, WatchOptions};
