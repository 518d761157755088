//! Starts the channel adapters of `leadsift run` that are configured: IMAP
//! intake workers and the manager notifier.

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Settings;

/// Spawns each configured adapter into `tasks` with the daemon's shutdown token.
pub fn spawn(
    settings: &Settings,
    app: &App,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<&'static str>>,
) -> anyhow::Result<()> {
    let registry = &app.metrics.registry;
    let imap = leadsift_imap::ImapIntake::new(settings.imap.clone(), app.intake.clone(), app.store.clone(), registry)?;
    if imap.is_enabled() {
        tracing::info!(accounts = settings.imap.accounts.len(), "starting IMAP intake");
        let token = shutdown.clone();
        tasks.spawn(async move {
            imap.run(token).await?;
            Ok("imap")
        });
    }
    if settings.notify.enabled {
        let stage_names =
            leadsift_core::LeadStage::ALL.iter().map(|stage| (*stage, settings.stage_name(*stage))).collect();
        let notifier = leadsift_notify::Notifier::new(settings.notify.clone(), app.store.clone(), registry)?
            .with_stage_names(stage_names);
        let token = shutdown.clone();
        tasks.spawn(async move {
            notifier.run(token).await?;
            Ok("notify")
        });
    }
    Ok(())
}
