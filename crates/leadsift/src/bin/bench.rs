//! `leadsift-bench`: reproducible throughput figures for the README.
//!
//! ```text
//! cargo run --release -p leadsift --bin leadsift-bench -- classify PATH...
//! cargo run --release -p leadsift --bin leadsift-bench -- import PATH...
//! cargo run --release -p leadsift --bin leadsift-bench -- model [--model DIR]
//! cargo run --release -p leadsift --bin leadsift-bench -- http --requests 60000 --connections 64
//! cargo run --release -p leadsift --bin leadsift-bench -- pipeline --triage 1,2
//! cargo run --release -p leadsift --bin leadsift-bench -- report --leads 200000 --messages 1000000
//! ```
//! `report` seeds a fresh PostgreSQL database and times every report of a
//! month, a quarter and a year (see `bench/report.rs`).
//! `pipeline` measures intake → committed verdict over Kafka and PostgreSQL
//! with separate triage processes (see `bench/pipeline.rs`).
//! `classify` reads every input into memory first, then parses the raw
//! bytes and classifies them with the built-in rules and model (or rules
//! alone with `--no-model`) on one thread, several rounds; it reports
//! messages per second. `model` reports the model's load time and the
//! memory the loaded model takes (resident-set growth). `import` runs the real
//! `leadsift import` binary into a fresh SQLite database per round and
//! reports messages stored per second of wall time (process start included).
//! `http` starts the real `leadsift run` daemon on a fresh SQLite database
//! (triage workers running, as in production), sends signed Telegram webhook
//! updates from N concurrent keep-alive connections, and reports requests
//! per second and latency percentiles; every 2xx means the update was
//! durably queued. It then waits for triage to drain and checks the count.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use leadsift_core::{Classifier, SenderStanding};
use leadsift_formats::{ParseOptions, parse_item, read_inputs};
use leadsift_model::{CombinedClassifier, Model};
use leadsift_rules::RuleSet;

#[path = "bench/pipeline.rs"]
mod pipeline;
#[path = "bench/report.rs"]
mod report;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Parse from raw bytes + rules + model classification, one thread.
    Classify {
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Model directory (default: the built-in model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Rules alone.
        #[arg(long)]
        no_model: bool,
        /// Parse every message once up front and time classification alone.
        #[arg(long)]
        preparsed: bool,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// `leadsift import` into a fresh SQLite database, wall time.
    Import {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The leadsift binary (default: next to this one).
        #[arg(long)]
        leadsift: Option<PathBuf>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Model load time and the memory the loaded model takes.
    Model {
        /// Model directory (default: models/default).
        #[arg(long, default_value = "models/default")]
        model: PathBuf,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Webhook requests per second through `leadsift run` (SQLite, triage running).
    Http {
        /// Measured requests (after a warm-up of a tenth as many).
        #[arg(long, default_value_t = 60_000)]
        requests: usize,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// The leadsift binary (default: next to this one).
        #[arg(long)]
        leadsift: Option<PathBuf>,
    },
    /// Intake → committed verdict over Kafka + PostgreSQL with 1..N triage processes.
    Pipeline(pipeline::PipelineArgs),
    /// The management reports over a seeded PostgreSQL store (1,000,000 messages, 200,000 leads).
    Report(report::ReportArgs),
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    match Args::parse().bench {
        Bench::Classify { rounds, rules, model, no_model, preparsed, paths } => {
            let model = if no_model {
                None
            } else {
                Some(Arc::new(match model {
                    Some(dir) => Model::load(&dir)?,
                    None => Model::builtin().clone(),
                }))
            };
            classify(rounds, rules, model, preparsed, &paths)
        }
        Bench::Model { model, rounds } => model_load(&model, rounds),
        Bench::Import { rounds, leadsift, paths } => import(rounds, leadsift, &paths),
        Bench::Http { requests, connections, leadsift } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(http_load::run(requests, connections, leadsift_binary(leadsift)?)),
        Bench::Pipeline(args) => tokio::runtime::Runtime::new()?.block_on(pipeline::run(args)),
        Bench::Report(args) => report::run(args),
    }
}

/// Resident set size of this process, in bytes (Linux).
fn resident_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).context("statm has no resident field")?.parse()?;
    Ok(pages * 4096)
}

fn model_load(dir: &std::path::Path, rounds: usize) -> anyhow::Result<()> {
    let mut times = Vec::new();
    let mut growth = Vec::new();
    for _ in 0..rounds.max(1) {
        let before = resident_bytes()?;
        let started = Instant::now();
        let model = Model::load(dir)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        growth.push((resident_bytes()?.saturating_sub(before)) as f64 / 1e6);
        drop(model);
    }
    println!(
        "model {}: load median {:.1} ms (max {:.1} ms), resident growth of the first load {:.1} MB",
        dir.display(),
        median(times.clone()),
        times.iter().copied().fold(0.0, f64::max),
        growth[0]
    );
    Ok(())
}

fn classify(
    rounds: usize,
    rules: Option<PathBuf>,
    model: Option<Arc<Model>>,
    preparsed: bool,
    paths: &[PathBuf],
) -> anyhow::Result<()> {
    let options = ParseOptions::default();
    let items: Vec<_> = read_inputs(paths, &options).filter_map(Result::ok).collect();
    anyhow::ensure!(!items.is_empty(), "no inputs found");
    let bytes: usize = items.iter().map(|i| i.bytes.len()).sum();
    let rules = match rules {
        Some(path) => RuleSet::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => RuleSet::builtin(),
    };
    let classifier: Box<dyn Classifier> = match &model {
        Some(model) => Box::new(CombinedClassifier::new(rules, Arc::clone(model))),
        None => Box::new(rules),
    };
    let standing = SenderStanding::default();
    let parsed: Option<Vec<_>> =
        preparsed.then(|| items.iter().filter_map(|item| parse_item(item, &options).ok()).collect());
    let mut rates = Vec::new();
    let mut counts = std::collections::BTreeMap::new();
    for round in 0..rounds.max(1) {
        let started = Instant::now();
        let mut classified = 0usize;
        let mut record = |verdict: leadsift_core::Verdict| {
            classified += 1;
            if round == 0 {
                *counts.entry(verdict.to_string()).or_insert(0usize) += 1;
            }
        };
        match &parsed {
            Some(messages) => {
                for message in messages {
                    record(classifier.classify(message, &standing).verdict);
                }
            }
            None => {
                for item in &items {
                    if let Ok(message) = parse_item(item, &options) {
                        record(classifier.classify(&message, &standing).verdict);
                    }
                }
            }
        }
        let rate = classified as f64 / started.elapsed().as_secs_f64();
        rates.push(rate);
        println!(
            "round {}: {classified} messages in {:.3} s = {rate:.0} msg/s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "classify ({}{}): {} inputs ({:.1} MB), median {:.0} msg/s, best {:.0} msg/s, one thread; verdicts {counts:?}",
        if model.is_some() { "rules + model" } else { "rules only" },
        if preparsed { ", parsed beforehand" } else { ", parse included" },
        items.len(),
        bytes as f64 / 1e6,
        median(rates.clone()),
        rates.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}

fn leadsift_binary(leadsift: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let leadsift = match leadsift {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("leadsift"),
    };
    anyhow::ensure!(
        leadsift.exists(),
        "{} not found: build it with cargo build --release -p leadsift",
        leadsift.display()
    );
    Ok(leadsift)
}

fn import(rounds: usize, leadsift: Option<PathBuf>, paths: &[PathBuf]) -> anyhow::Result<()> {
    let leadsift = leadsift_binary(leadsift)?;
    let mut rates = Vec::new();
    for round in 0..rounds.max(1) {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let started = Instant::now();
        let output = Command::new(&leadsift)
            .args(["--db", &url, "import", "--json"])
            .args(paths)
            .env("LEADSIFT_LOG", "warn")
            .output()
            .context("run leadsift import")?;
        let elapsed = started.elapsed().as_secs_f64();
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("import printed no summary: {}", String::from_utf8_lossy(&output.stderr)))?;
        let stored = summary["stored"].as_u64().unwrap_or(0);
        let rate = stored as f64 / elapsed;
        rates.push(rate);
        println!("round {}: {stored} messages stored in {elapsed:.3} s = {rate:.0} msg/s ({summary})", round + 1);
    }
    println!(
        "import into SQLite: median {:.0} msg/s, best {:.0} msg/s",
        median(rates.clone()),
        rates.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}

mod http_load {
    use std::io::{BufRead, BufReader};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::Context;

    const SECRET: &str = "bench-secret";

    /// Kills the daemon however the benchmark ends.
    struct Daemon(std::process::Child);

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn update(i: usize) -> String {
        const TEXTS: [&str; 4] = [
            "Здравствуйте! Сколько стоит монтаж вентилируемого фасада 300 м2?",
            "Hello, could you send a price quote for 40 units with delivery to Moscow?",
            "Продвижение сайта в ТОП-10 Яндекса, пассивный доход, пишите!",
            "Добрый день, можно заказать замер на следующей неделе?",
        ];
        serde_json::json!({
            "update_id": i,
            "message": {"message_id": i, "date": 1_764_000_000, "text": TEXTS[i % TEXTS.len()],
                        "from": {"id": 1_000_000 + i % 5_000, "is_bot": false, "first_name": "Bench"},
                        "chat": {"id": 1_000_000 + i, "type": "private"}}
        })
        .to_string()
    }

    /// Sends `bodies[from..to]` over `connections` concurrent tasks; returns sorted latencies and failures.
    async fn load(
        client: &reqwest::Client,
        url: &str,
        bodies: Arc<Vec<String>>,
        range: std::ops::Range<usize>,
        connections: usize,
    ) -> (Vec<Duration>, usize) {
        let next = Arc::new(AtomicUsize::new(range.start));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections.max(1) {
            let (client, url, bodies, next, end) =
                (client.clone(), url.to_owned(), Arc::clone(&bodies), Arc::clone(&next), range.end);
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return (latencies, failures);
                    }
                    let started = Instant::now();
                    let response = client
                        .post(&url)
                        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
                        .header("Content-Type", "application/json")
                        .body(bodies[i].clone())
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies.push(started.elapsed());
                        }
                        _ => failures += 1,
                    }
                }
            });
        }
        let mut latencies = Vec::with_capacity(range.len());
        let mut failures = 0;
        while let Some(done) = tasks.join_next().await {
            if let Ok((l, f)) = done {
                latencies.extend(l);
                failures += f;
            }
        }
        latencies.sort();
        (latencies, failures)
    }

    fn percentile(sorted: &[Duration], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index].as_secs_f64() * 1000.0
    }

    pub async fn run(requests: usize, connections: usize, leadsift: PathBuf) -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("bench.db");
        let url = format!("sqlite://{}", db.display());
        let config = dir.path().join("leadsift.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{url}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[intake]\ndrop_folder = \"\"\n\
                 [webhooks.telegram]\nsecret_token = \"{SECRET}\"\nbot_username = \"bench_bot\"\n"
            ),
        )?;
        let mut child = Command::new(&leadsift)
            .args(["--config", config.to_str().unwrap_or_default(), "run"])
            .current_dir(dir.path())
            .env("LEADSIFT_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start leadsift run")?;
        let stderr = child.stderr.take().context("daemon stderr")?;
        let daemon = Daemon(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("address=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
            }
        });
        let address = rx.recv_timeout(Duration::from_secs(30)).context("daemon did not announce its address")?;
        let endpoint = format!("http://{address}/intake/telegram");
        let warmup = (requests / 10).max(100);
        let bodies: Arc<Vec<String>> = Arc::new((0..warmup + requests).map(update).collect());
        let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;

        let (_, warm_failures) = load(&client, &endpoint, Arc::clone(&bodies), 0..warmup, connections).await;
        anyhow::ensure!(warm_failures == 0, "{warm_failures} warm-up requests failed");
        let started = Instant::now();
        let (latencies, failures) =
            load(&client, &endpoint, Arc::clone(&bodies), warmup..warmup + requests, connections).await;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "http: {} webhook requests (Telegram updates, SQLite, triage running) over {connections} connections \
             in {elapsed:.2} s = {:.0} req/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             {failures} failed",
            latencies.len(),
            latencies.len() as f64 / elapsed,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.90),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
        );

        // Every 2xx was durably queued: wait for triage to store them all.
        let store = leadsift_store::SqlStore::connect(&leadsift_store::StoreSettings::new(url)).await?;
        let drain_started = Instant::now();
        let expected = (warmup + requests) as i64;
        loop {
            let stored = leadsift_core::LeadStore::message_counts(&store).await?.total();
            if stored >= expected {
                println!(
                    "triage: all {stored} messages stored {:.1} s after the last request",
                    drain_started.elapsed().as_secs_f64()
                );
                break;
            }
            anyhow::ensure!(
                drain_started.elapsed() < Duration::from_secs(600),
                "triage stored only {stored} of {expected}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        store.close().await;
        drop(daemon);
        anyhow::ensure!(failures == 0, "{failures} requests failed");
        Ok(())
    }
}
