//! `leadsift run`: the daemon. Every component gets the same shutdown
//! token; the first one to fail stops the rest. `--role` picks the
//! components, so intake and triage can scale as separate processes over
//! Kafka (or share the built-in queue's database).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use leadsift_core::LeadStore;
use leadsift_pipeline::dropfolder::DropFolder;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Settings;
use crate::http::{self, HttpState};

/// Which components `leadsift run` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    /// Inputs into the queue (drop folder, HTTP), no triage.
    Intake,
    /// Triage workers (and rules hot reload) consuming the queue.
    Triage,
    /// Both in one process.
    #[default]
    All,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Components to run: intake, triage or all.
    #[arg(long, value_enum, default_value_t = Role::All, env = "LEADSIFT_ROLE")]
    pub role: Role,
}

pub async fn run(settings: Settings, args: RunArgs) -> anyhow::Result<ExitCode> {
    let role = args.role;
    let queue_role = match role {
        Role::Intake => leadsift_kafka::QueueRole::Publish,
        Role::Triage | Role::All => leadsift_kafka::QueueRole::PublishAndConsume,
    };
    let app = App::build_for(&settings, queue_role).await?;
    tracing::info!(?role, kafka = app.kafka.is_some(), "starting");
    let triage_workers = if role == Role::Intake { 0 } else { settings.triage.workers };
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(&settings.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
    tracing::info!(address = %listener.local_addr()?, "HTTP server listening (/healthz, /metrics, /intake/*)");

    let mut tasks: JoinSet<anyhow::Result<&'static str>> = JoinSet::new();
    for _ in 0..triage_workers {
        let worker = app.triage.clone();
        let token = shutdown.clone();
        tasks.spawn(async move {
            worker.run(token).await?;
            Ok("triage")
        });
    }
    // The built-in rules (no rules file) have nothing to watch.
    if role != Role::Intake && app.rules.path().is_some() {
        let rules = app.rules.clone();
        let token = shutdown.clone();
        let poll = Duration::from_millis(settings.rules.poll_ms);
        tasks.spawn(async move {
            rules.watch(poll, token).await;
            Ok("rules watcher")
        });
    }
    // The model learns and refreshes where triage runs.
    if role != Role::Intake
        && let Some(model) = &app.model
    {
        let store: Arc<dyn LeadStore> = Arc::new(app.store.clone());
        let token = shutdown.clone();
        let interval = Duration::from_secs(settings.model.refresh_secs);
        let watched = Arc::clone(model);
        tasks.spawn(async move {
            watched.watch(store, interval, token).await;
            Ok("model watcher")
        });
        if settings.model.learn {
            let learner =
                crate::app::learner(&settings, &app.store, Arc::clone(model), app.rules.clone(), &app.metrics).await?;
            let token = shutdown.clone();
            let interval = Duration::from_secs(settings.model.learn_interval_secs);
            tasks.spawn(async move {
                learner.run(interval, token).await;
                Ok("model learner")
            });
        }
    }
    // Bitrix24 sync runs beside triage; several processes share the outbox under leases.
    if role != Role::Intake && settings.bitrix24.enabled {
        let sync =
            leadsift_bitrix24::Bitrix24Sync::new(settings.bitrix24.clone(), app.store.clone(), &app.metrics.registry)?;
        let token = shutdown.clone();
        tasks.spawn(async move {
            sync.run(token).await?;
            Ok("bitrix24")
        });
    }
    if role != Role::Triage && !settings.intake.drop_folder.as_os_str().is_empty() {
        let folder = DropFolder::new(settings.intake.drop_folder.clone());
        let intake = app.intake.clone();
        let token = shutdown.clone();
        tasks.spawn(async move {
            folder.run(intake, token).await?;
            Ok("drop folder")
        });
    }
    if role != Role::Triage {
        crate::channels::spawn(&settings, &app, &shutdown, &mut tasks)?;
    }
    let webhooks = leadsift_webhooks::Webhooks::new(
        settings.webhooks.clone(),
        app.intake.clone(),
        std::sync::Arc::new(app.store.clone()),
        &app.metrics,
    );
    let webhook_routes = webhooks.router();
    if role != Role::Triage {
        for (name, task) in webhooks.tasks(shutdown.clone()) {
            tasks.spawn(async move {
                task.await?;
                Ok(name)
            });
        }
    }
    let state = HttpState {
        queue: app.queue.clone(),
        metrics: app.metrics.clone(),
        rules: app.rules.clone(),
        webhooks: webhook_routes,
        api: crate::api::router(crate::api::ApiState {
            store: Arc::new(app.store.clone()),
            token: settings.api.token.clone(),
            currency: settings.reports.currency()?,
            utc_offset: settings.reports.utc_offset()?,
            requests: crate::api::ApiState::requests_metric(&app.metrics),
        }),
        web: leadsift_web::router(leadsift_web::WebState {
            store: app.store.clone(),
            settings: Arc::new(settings.web.clone()),
            stage_names: Arc::new(settings.stages.clone()),
            report_currency: settings.reports.currency()?,
            utc_offset: settings.reports.utc_offset()?,
            metrics: Some(app.metrics.clone()),
            rules: Some(leadsift_web::rules::RulesContext {
                rules: app.rules.clone(),
                model: app.model.clone(),
                metrics: app.metrics.clone(),
            }),
        }),
        metrics_token: settings.http.metrics_token.clone(),
        metrics_networks: Arc::new(settings.http.metrics_networks()?),
    };
    let token = shutdown.clone();
    tasks.spawn(async move {
        http::serve(listener, state, token).await?;
        Ok("http")
    });

    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut failure = None;
    tokio::select! {
        () = &mut signal => tracing::info!("shutdown requested"),
        Some(done) = tasks.join_next() => {
            match done {
                Ok(Ok(name)) => tracing::warn!(component = name, "component stopped"),
                Ok(Err(error)) => { tracing::error!(error = %format!("{error:#}"), "component failed"); failure = Some(error) }
                Err(join_error) => failure = Some(anyhow::anyhow!("component panicked: {join_error}")),
            }
        }
    }
    shutdown.cancel();
    // Workers finish the batch in hand; give them a deadline.
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(error)) = done {
                tracing::error!(error = %format!("{error:#}"), "component failed while stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("components did not stop within 20 s; exiting anyway (unacked messages will be redelivered)");
    }
    app.close().await;
    match failure {
        Some(error) => Err(error),
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
