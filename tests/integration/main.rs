//! leadsift integration tests: one binary, one module per area.

mod cli;
mod store_conformance;
