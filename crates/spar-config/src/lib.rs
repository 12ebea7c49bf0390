//! Reading Istio configuration from the file system.
//!
//! Paths may name files or directories (walked recursively, in a stable order);
//! `-` reads standard input. Only `.yaml`, `.yml` and `.json` files inside
//! directories are read; a file named explicitly is read whatever its extension.
//! Parsing and validation are `spar-model`'s job; this crate only finds and reads text.

mod sources;

pub use sources::{collect_files, read_sources, ConfigError, SourceText};
