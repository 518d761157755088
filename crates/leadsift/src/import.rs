//! `leadsift import`: the full pipeline over files, folders and archives.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use leadsift_core::Message;
use leadsift_formats::parse_json_lines;
use leadsift_pipeline::{IntakeReport, TriageReport};
use serde_json::json;

use crate::app::App;
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Files, folders, Maildirs, mboxes, archives; `-` reads event JSON lines from stdin.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub async fn run(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // With Kafka, import is intake only: the triage processes store what it publishes.
    let kafka = settings.kafka_settings()?.is_some();
    let app = App::build(settings).await?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("static template"));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
    };

    // Triage runs alongside intake so the queue never holds the whole import.
    let intake_done = Arc::new(AtomicBool::new(false));
    let mut triage_tasks = Vec::new();
    // Several workers pipeline classification with the store writes of
    // another batch; the store serialises the writes themselves.
    for _ in 0..if kafka { 0 } else { settings.triage.workers } {
        let triage = app.triage.clone();
        let triage_done = Arc::clone(&intake_done);
        triage_tasks.push(tokio::spawn(async move {
            let mut total = TriageReport::default();
            loop {
                let report = triage.process_batch().await?;
                let idle = report.stored + report.duplicate + report.failed == 0;
                total.add(&report);
                if idle {
                    if triage_done.load(Ordering::Acquire) {
                        return Ok::<_, leadsift_pipeline::PipelineError>(total);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }));
    }

    let (stdin_requested, paths): (Vec<PathBuf>, Vec<PathBuf>) =
        args.paths.into_iter().partition(|p| p.as_os_str() == "-");
    let mut intake = IntakeReport::default();
    if !stdin_requested.is_empty() {
        intake = import_stdin(&app).await?;
    }
    let bar = progress.clone();
    let from_paths = app
        .intake
        .ingest_paths(paths, move |r| {
            bar.set_message(format!("read {} (new {}, duplicate {}, failed {})", r.read, r.new, r.duplicate, r.failed))
        })
        .await?;
    merge_intake(&mut intake, from_paths);
    intake_done.store(true, Ordering::Release);

    let mut triaged = TriageReport::default();
    for task in triage_tasks {
        triaged.add(&task.await??);
    }
    let bar = progress.clone();
    if kafka {
        tracing::info!(published = intake.new, "published to Kafka; the triage processes store the messages");
    } else {
        let rest = app.triage.drain(move |t| bar.set_message(format!("triaged {}", t.stored + t.duplicate))).await?;
        triaged.add(&rest);
    }
    progress.finish_and_clear();
    app.close().await;

    let elapsed = started.elapsed().as_secs_f64();
    let by_verdict: BTreeMap<String, u64> = triaged.by_verdict.iter().map(|(v, n)| (v.to_string(), *n)).collect();
    if args.json {
        let summary = json!({
            "read": intake.read,
            "new": intake.new,
            "duplicate": intake.duplicate,
            "failed": intake.failed,
            "skipped": intake.skipped,
            "stored": triaged.stored,
            "leads_created": triaged.leads_created,
            "dead_lettered": triaged.dead_lettered,
            "by_verdict": by_verdict,
            "seconds": (elapsed * 1000.0).round() / 1000.0,
        });
        println!("{summary}");
    } else {
        for (origin, error) in &intake.failures {
            eprintln!("failed: {origin}: {error}");
        }
        println!(
            "read {} · new {} · duplicate {} · failed {} (quarantined) · skipped {} · stored {} · leads {} · {:.1}s",
            intake.read,
            intake.new,
            intake.duplicate,
            intake.failed,
            intake.skipped,
            triaged.stored,
            triaged.leads_created,
            elapsed
        );
        let verdicts: Vec<String> = by_verdict.iter().map(|(v, n)| format!("{v} {n}")).collect();
        if !verdicts.is_empty() {
            println!("verdicts: {}", verdicts.join(" · "));
        }
    }
    Ok(if intake.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn merge_intake(total: &mut IntakeReport, other: IntakeReport) {
    total.read += other.read;
    total.new += other.new;
    total.duplicate += other.duplicate;
    total.failed += other.failed;
    total.skipped += other.skipped;
    total.failures.extend(other.failures);
}

async fn import_stdin(app: &App) -> anyhow::Result<IntakeReport> {
    let options = app.intake.options().clone();
    // Reading stdin blocks: collect parsed lines on a blocking thread.
    let lines = tokio::task::spawn_blocking(move || {
        parse_json_lines(std::io::stdin().lock(), "-", &options)
            .map(|(origin, parsed)| (origin, parsed.map_err(|e| e.to_string())))
            .collect::<Vec<(String, Result<Message, String>)>>()
    })
    .await?;
    let mut report = IntakeReport::default();
    let mut batch = Vec::new();
    for (origin, parsed) in lines {
        report.read += 1;
        match parsed {
            Ok(message) => batch.push(message),
            Err(error) => {
                app.intake.quarantine(&origin, None, &error, &[]).await?;
                report.failed += 1;
                report.failures.push((origin, error));
            }
        }
    }
    for chunk in batch.chunks(256) {
        for outcome in app.intake.publish(chunk).await? {
            match outcome {
                leadsift_core::Published::Duplicate => report.duplicate += 1,
                _ => report.new += 1,
            }
        }
    }
    Ok(report)
}
