//! Flags and loading shared by the commands that read config.

use std::path::PathBuf;

use anyhow::Context;
use spar_model::{ConfigSet, LoadOptions};

use crate::output::Format;

#[derive(clap::Args)]
pub struct InputArgs {
    /// Files or directories to read (directories recursively: *.yaml, *.yml, *.json);
    /// `-` reads standard input. Multi-document YAML, JSON and `kind: List` are accepted.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Namespace for resources that do not set `metadata.namespace`.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

impl InputArgs {
    pub fn load(&self) -> anyhow::Result<ConfigSet> {
        if self.paths.is_empty() {
            anyhow::bail!(
                "no PATH given: name files or directories to read, or - for standard input"
            );
        }
        let sources = spar_config::read_sources(&self.paths).context("reading config")?;
        let opts = LoadOptions {
            default_namespace: self.namespace.clone(),
            ..LoadOptions::default()
        };
        Ok(ConfigSet::load(
            sources.iter().map(|s| (s.name.as_str(), s.text.as_str())),
            &opts,
        ))
    }
}
