//! leadsift integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod bitrix24;
mod browser;
mod channel_state;
mod cli;
mod deploy;
mod feedback;
mod imap;
mod model_cli;
mod notify;
mod pipeline;
mod queue_conformance;
mod sales;
mod scale_out;
mod store_conformance;
mod web;
mod webhooks;
