//! leadsift integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

/// Runs each named `async fn case(db: &TestDb)` of the module on a fresh
/// SQLite file and on a fresh PostgreSQL database.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = leadsift_integration_tests::TestDb::sqlite().await;
                    super::$case(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = leadsift_integration_tests::TestDb::postgres().await else { return };
                    super::$case(&db).await;
                }
            )*
        }
    };
}

mod bitrix24;
mod browser;
mod channel_state;
mod cli;
mod deploy;
mod feedback;
mod handwritten;
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
