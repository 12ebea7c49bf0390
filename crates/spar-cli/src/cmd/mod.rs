//! One module per subcommand.

pub mod analyze;
pub mod bootstrap;
pub mod ca;
pub mod cert_check;
pub mod control_plane;
pub mod ctl;
pub mod diff;
pub mod explain;
pub mod input;
pub mod iptables;
pub mod line_diff;
pub mod proxy;
pub mod proxy_config;
pub mod tls_check;
pub mod validate;
