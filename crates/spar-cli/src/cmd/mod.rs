//! One module per subcommand.

pub mod analyze;
pub mod bootstrap;
pub mod control_plane;
pub mod ctl;
pub mod input;
pub mod proxy_config;
pub mod validate;
