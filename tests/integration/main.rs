//! leadsift integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cli;
mod pipeline;
mod store_conformance;
mod webhooks;
