//! `leadsift-bench pipeline`: end-to-end throughput over Kafka and
//! PostgreSQL, from intake to committed verdict.
//!
//! Per round: a fresh PostgreSQL database, librdkafka's mock cluster served
//! by this process (a real Kafka-protocol broker on 127.0.0.1), and N real
//! `leadsift run --role triage` processes. Once they share every partition,
//! the clock starts; this process does intake's work (parse event JSON,
//! publish to Kafka with the idempotent producer, acks=all) and the clock
//! stops when the last message's verdict is committed in PostgreSQL.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use leadsift_core::{Message, Queue};
use leadsift_formats::{ParseOptions, parse_event_json};
use leadsift_kafka::mock::MockBroker;
use leadsift_kafka::{KafkaQueue, KafkaSettings, QueueRole};
use sqlx::Connection;

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// Messages per round.
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Triage process counts to measure, e.g. `1,2`.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    triage: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Partitions of the inbound topic.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Messages per triage store transaction (at most: a batch is what the
    /// consumer has fetched). 2048 costs PostgreSQL and triage a fifth less
    /// CPU per message than 1024 (docs/benchmarks.md).
    #[arg(long, default_value_t = 2048)]
    batch_size: usize,
    /// Triage workers per process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// PostgreSQL URL of a database the bench may create databases from.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg: String,
    /// The leadsift binary (default: next to this one).
    #[arg(long)]
    leadsift: Option<PathBuf>,
}

/// A `leadsift run --role triage` child; its log tells its partition assignment.
struct TriageProcess {
    child: Child,
    assigned: Arc<Mutex<usize>>,
    address: Arc<Mutex<Option<String>>>,
}

impl TriageProcess {
    fn start(leadsift: &Path, config: &Path) -> anyhow::Result<TriageProcess> {
        let mut child = Command::new(leadsift)
            .args(["--config", &config.display().to_string(), "run", "--role", "triage"])
            .env("LEADSIFT_LOG", "warn,leadsift_kafka=info,leadsift::run=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start leadsift run --role triage")?;
        let stderr = child.stderr.take().context("child stderr")?;
        let assigned = Arc::new(Mutex::new(0));
        let address = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&assigned);
        let address_sink = Arc::clone(&address);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("HTTP server listening")
                    && let Some(rest) = line.split("address=").nth(1)
                {
                    *address_sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        rest.split_whitespace().next().map(str::to_owned);
                }
                let count = if line.contains("partitions revoked") {
                    Some(0)
                } else if line.contains("partitions assigned") {
                    line.split("partitions=[")
                        .nth(1)
                        .map(|list| list.split(']').next().unwrap_or_default().split(',').count())
                } else {
                    if line.contains("ERROR") || line.contains("WARN") {
                        eprintln!("triage: {line}");
                    }
                    None
                };
                if let Some(count) = count {
                    *sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = count;
                }
            }
        });
        Ok(TriageProcess { child, assigned, address })
    }

    /// CPU ticks (utime + stime, all threads) this process used so far; `None` off Linux.
    fn cpu_ticks(&self) -> Option<u64> {
        let fields = proc_stat(self.child.id())?;
        Some(fields.get(11..13)?.iter().filter_map(|f| f.parse::<u64>().ok()).sum())
    }

    fn assigned(&self) -> usize {
        *self.assigned.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Messages this process stored: `leadsift_messages_triaged_total` from
    /// its /metrics (incremented after the store transaction committed).
    /// Polling this instead of `COUNT(*)` keeps the bench off PostgreSQL.
    async fn stored(&self) -> anyhow::Result<u64> {
        Ok(self
            .metrics()
            .await?
            .lines()
            .filter(|l| l.starts_with("leadsift_messages_triaged_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// Seconds spent in each triage phase and the number of batches, from
    /// `leadsift_triage_phase_seconds`.
    async fn phases(&self) -> anyhow::Result<BTreeMap<String, (f64, u64)>> {
        let mut phases: BTreeMap<String, (f64, u64)> = BTreeMap::new();
        for line in self.metrics().await?.lines() {
            let Some(rest) = line.strip_prefix("leadsift_triage_phase_seconds_") else { continue };
            let (Some((series, value)), Some(phase)) =
                (rest.rsplit_once(' '), rest.split("phase=\"").nth(1).and_then(|p| p.split('"').next()))
            else {
                continue;
            };
            let entry = phases.entry(phase.to_owned()).or_default();
            if series.starts_with("sum") {
                entry.0 += value.parse::<f64>().unwrap_or(0.0);
            } else if series.starts_with("count") {
                entry.1 += value.parse::<u64>().unwrap_or(0);
            }
        }
        Ok(phases)
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self
            .address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .context("triage process has not announced its HTTP address")?;
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n").await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok(body)
    }
}

impl Drop for TriageProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Event-JSON lines: web-form inquiries, spam mail and missed calls from
/// 5,000 repeat senders.
fn events(count: usize, round: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let sender = i % 5000;
            let id = format!("bench-{round}-{i}");
            let event = match i % 3 {
                0 => serde_json::json!({
                    "channel": "webform", "id": id, "received_at": "2026-11-20T10:15:00Z",
                    "from": {"email": format!("client{sender}@firm{}.example", sender % 97), "name": "Client"},
                    "text": "Добрый день! Сколько стоит монтаж фасада? Пришлите коммерческое предложение.",
                    "utm": {"source": "yandex", "medium": "cpc", "campaign": "fasad"}
                }),
                1 => serde_json::json!({
                    "channel": "email", "id": id, "received_at": "2026-11-20T10:16:00Z",
                    "from": {"email": format!("promo{sender}@spam-seo.example")},
                    "subject": "Продвижение сайта в ТОП-10",
                    "text": "Продвижение сайта, вывод в топ Яндекса, база клиентов. Пассивный доход!"
                }),
                _ => serde_json::json!({
                    "channel": "call", "id": id, "received_at": "2026-11-20T10:17:00Z",
                    "from": {"phone": format!("+7916{sender:07}")},
                    "to": "+74951234501", "call": {"duration_secs": 95, "answered": false}
                }),
            };
            event.to_string().into_bytes()
        })
        .collect()
}

async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {admin_url} (start it with scripts/services.sh)"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
}

/// PostgreSQL's work during the timed window, independent of how loaded the
/// machine is: CPU time of the server processes (from /proc, when the server
/// runs on this host), WAL written, and the database's transactions and rows.
#[derive(Debug, Clone, Copy, Default)]
struct PgWork {
    /// utime + stime of the postmaster, its live children and its reaped children, in clock ticks.
    cpu_ticks: Option<u64>,
    wal_bytes: i64,
    commits: i64,
    rows_written: i64,
}

impl PgWork {
    async fn sample(conn: &mut sqlx::PgConnection) -> anyhow::Result<PgWork> {
        let (wal, commits, rows_written): (i64, i64, i64) = sqlx::query_as(
            "SELECT CAST(pg_current_wal_lsn() - '0/0' AS BIGINT), xact_commit, \
             tup_inserted + tup_updated + tup_deleted \
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut *conn)
        .await?;
        // The checkpointer is a child of the postmaster, which is the parent of every backend.
        let checkpointer: Option<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
                .fetch_optional(&mut *conn)
                .await?;
        let cpu_ticks = checkpointer.and_then(|pid| server_cpu_ticks(u32::try_from(pid).ok()?));
        Ok(PgWork { cpu_ticks, wal_bytes: wal, commits, rows_written })
    }

    fn since(self, before: PgWork) -> PgWork {
        PgWork {
            cpu_ticks: self.cpu_ticks.zip(before.cpu_ticks).map(|(a, b)| a.saturating_sub(b)),
            wal_bytes: self.wal_bytes - before.wal_bytes,
            commits: self.commits - before.commits,
            rows_written: self.rows_written - before.rows_written,
        }
    }
}

/// Fields of /proc/PID/stat after the command name.
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

/// CPU ticks of the whole PostgreSQL server: the postmaster's own and its
/// children's, live (utime + stime) and exited (cutime + cstime, which the
/// postmaster collected when it reaped them). Linux only; `None` elsewhere or
/// when the server is not on this host.
fn server_cpu_ticks(checkpointer: u32) -> Option<u64> {
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let postmaster: u32 = proc_stat(checkpointer)?.get(1)?.parse().ok()?;
    let ticks = |fields: &[String], range: std::ops::Range<usize>| -> u64 {
        fields[range].iter().filter_map(|f| f.parse::<u64>().ok()).sum()
    };
    let own = proc_stat(postmaster)?;
    let mut total = ticks(&own, 11..15);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(fields) = proc_stat(pid)
            && fields.get(1).is_some_and(|ppid| *ppid == postmaster.to_string())
        {
            total += ticks(&fields, 11..13);
        }
    }
    Some(total)
}

/// CPU ticks (utime + stime, all threads) of this process.
fn own_cpu_ticks() -> Option<u64> {
    Some(proc_stat(std::process::id())?.get(11..13)?.iter().filter_map(|f| f.parse::<u64>().ok()).sum())
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 on every Linux we run on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

async fn stored(conn: &mut sqlx::PgConnection) -> i64 {
    // The table exists once the first triage process migrated.
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM messages").fetch_one(conn).await.unwrap_or(0)
}

/// One round with `processes` triage processes; returns messages per second.
/// Seconds and batches per triage phase, summed over the processes.
async fn phase_totals(triage: &[TriageProcess]) -> anyhow::Result<BTreeMap<String, (f64, u64)>> {
    let mut phases: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for process in triage {
        for (phase, (seconds, count)) in process.phases().await? {
            let entry = phases.entry(phase).or_default();
            entry.0 += seconds;
            entry.1 += count;
        }
    }
    Ok(phases)
}

async fn round(args: &PipelineArgs, leadsift: &Path, processes: usize, round: usize) -> anyhow::Result<f64> {
    let name = format!("leadsift_bench_{}_{round}_{processes}", std::process::id());
    let db_url = create_database(&args.pg, &name).await?;
    let result = measure(args, leadsift, processes, round, &db_url).await;
    drop_database(&args.pg, &name).await;
    result
}

async fn measure(
    args: &PipelineArgs,
    leadsift: &Path,
    processes: usize,
    round: usize,
    db_url: &str,
) -> anyhow::Result<f64> {
    let defaults = KafkaSettings::new("unused:1");
    let broker = MockBroker::start(&[(&defaults.topic, args.partitions), (&defaults.dead_letter_topic, 1)])?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("leadsift.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{db_url}\"\nmax_connections = 4\n[queue]\nurl = \"kafka://{}\"\n\
             [triage]\nbatch_size = {}\nworkers = {}\n[intake]\ndrop_folder = \"\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[rules]\npath = \"{}\"\n",
            broker.brokers,
            args.batch_size,
            args.workers,
            dir.path().join("builtin-rules").display()
        ),
    )?;
    let triage: Vec<TriageProcess> =
        (0..processes).map(|_| TriageProcess::start(leadsift, &config)).collect::<anyhow::Result<_>>()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let partitions = usize::try_from(args.partitions)?;
    while triage.iter().any(|t| t.assigned() == 0)
        || triage.iter().map(TriageProcess::assigned).sum::<usize>() != partitions
    {
        anyhow::ensure!(Instant::now() < deadline, "triage processes did not share the partitions within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = events(args.messages, round);
    let mut settings = KafkaSettings::new(broker.brokers.clone());
    settings.linger = Duration::from_millis(5);
    let intake = KafkaQueue::connect(settings, QueueRole::Publish)?;
    let options = ParseOptions::default();
    let mut probe = sqlx::PgConnection::connect(db_url).await?;
    let before = PgWork::sample(&mut probe).await?;
    let triage_before: Option<u64> = triage.iter().map(TriageProcess::cpu_ticks).sum();
    let bench_before = own_cpu_ticks();
    let phases_before = phase_totals(&triage).await?;

    let started = Instant::now();
    for chunk in lines.chunks(2000) {
        let messages: Vec<Message> =
            chunk.iter().map(|raw| parse_event_json(raw, &options)).collect::<Result<_, _>>()?;
        intake.publish(&messages).await?;
    }
    let published = started.elapsed();
    let want = u64::try_from(args.messages)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut count = 0;
        for process in &triage {
            count += process.stored().await?;
        }
        if count >= want {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {count} of {want} messages stored after 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = args.messages as f64 / elapsed;
    let triage_ticks = triage.iter().map(TriageProcess::cpu_ticks).sum::<Option<u64>>().zip(triage_before);
    let bench_ticks = own_cpu_ticks().zip(bench_before);
    let mut phases = phase_totals(&triage).await?;
    for (phase, (seconds, count)) in phases_before {
        let entry = phases.entry(phase).or_default();
        entry.0 -= seconds;
        entry.1 = entry.1.saturating_sub(count);
    }
    // The triage processes' backends report their statistics as they exit.
    drop(triage);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let work = PgWork::sample(&mut probe).await?.since(before);
    println!(
        "round {}: {} triage process(es): {} messages published in {:.2} s, all verdicts committed after {elapsed:.2} s = {rate:.0} msg/s",
        round + 1,
        processes,
        args.messages,
        published.as_secs_f64()
    );
    let per_10k = 10_000.0 / args.messages as f64;
    println!(
        "  PostgreSQL: {} CPU s / 10k msg, {:.0} WAL bytes/msg, {:.3} transactions/msg (triage and single reads), {:.1} rows written/msg",
        work.cpu_ticks.map_or_else(
            || "n/a (server not on this host)".to_owned(),
            |t| format!("{:.2}", t as f64 / CLOCK_TICKS_PER_SECOND * per_10k)
        ),
        work.wal_bytes as f64 / args.messages as f64,
        work.commits as f64 / args.messages as f64,
        work.rows_written as f64 / args.messages as f64,
    );
    let cpu = |ticks: Option<(u64, u64)>| {
        ticks.map_or_else(
            || "n/a".to_owned(),
            |(after, before)| format!("{:.2}", after.saturating_sub(before) as f64 / CLOCK_TICKS_PER_SECOND * per_10k),
        )
    };
    println!(
        "  CPU s / 10k msg: triage processes {}, this process (intake and the mock broker) {}",
        cpu(triage_ticks),
        cpu(bench_ticks)
    );
    let batches = phases.get("store").map_or(0, |(_, n)| *n);
    println!(
        "  triage batches: {batches} (mean {:.0} messages); wall s / 10k msg summed over workers: {}",
        args.messages as f64 / batches.max(1) as f64,
        phases
            .iter()
            .map(|(phase, (seconds, _))| format!("{phase} {:.2}", seconds * per_10k))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(probe);
    let mut conn = sqlx::PgConnection::connect(db_url).await?;
    let stored = stored(&mut conn).await;
    anyhow::ensure!(
        stored == i64::try_from(args.messages)?,
        "PostgreSQL holds {stored} messages, not {}",
        args.messages
    );
    Ok(rate)
}

pub async fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let leadsift = match &args.leadsift {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("leadsift"),
    };
    anyhow::ensure!(
        leadsift.exists(),
        "{} not found: build it with cargo build --release -p leadsift",
        leadsift.display()
    );
    let mut medians = Vec::new();
    for &processes in &args.triage {
        let mut rates = Vec::new();
        for r in 0..args.rounds.max(1) {
            rates.push(round(&args, &leadsift, processes, r).await?);
        }
        let median = super::median(rates.clone());
        println!(
            "pipeline, {processes} triage process(es) x {} workers, {} partitions, batch {}: median {median:.0} msg/s (rounds {:?})",
            args.workers,
            args.partitions,
            args.batch_size,
            rates.iter().map(|r| r.round() as u64).collect::<Vec<_>>()
        );
        medians.push((processes, median));
    }
    if let (Some((one, first)), Some((many, last))) = (medians.first(), medians.last())
        && one != many
    {
        println!("scaling {one} -> {many} triage processes: x{:.2}", last / first);
    }
    Ok(())
}
