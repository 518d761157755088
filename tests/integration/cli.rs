//! placeholder until the CLI lands
