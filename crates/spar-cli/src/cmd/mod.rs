//! One module per subcommand.

pub mod analyze;
pub mod input;
pub mod validate;
