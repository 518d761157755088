//! leadsift integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cli;
mod deploy;
mod pipeline;
mod queue_conformance;
mod scale_out;
mod store_conformance;
