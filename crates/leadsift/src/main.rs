//! `leadsift`: triage of inbound sales inquiries. Thin entry point: parse
//! arguments, load settings, set up logging, run one command.

mod admin;
mod api;
mod app;
mod channels;
mod classify;
mod config;
mod http;
mod import;
mod model_cmd;
mod run;
mod sales;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Triage allocates many short-lived strings (parsed messages, JSON rows);
// mimalloc cuts the allocator's share of import time noticeably.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "leadsift", version, about = "Sift real client inquiries from spam, bank mail and newsletters")]
struct Cli {
    /// Settings file (TOML). Without it every setting has its default;
    /// LEADSIFT__SECTION__KEY environment variables override either.
    #[arg(long, global = true, env = "LEADSIFT_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default sqlite://leadsift.db) or postgres://…; also LEADSIFT_DB.
    #[arg(long, global = true)]
    db: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify messages without storing anything: one line per message.
    Classify(classify::ClassifyArgs),
    /// Run files, folders, Maildirs, mboxes, archives or JSON lines (`-`) through the full pipeline.
    Import(import::ImportArgs),
    /// The daemon: triage workers, rules hot reload, drop folder, /healthz and /metrics.
    Run(run::RunArgs),
    /// Work with leads.
    #[command(subcommand)]
    Leads(admin::LeadsCommand),
    /// Senders whose messages are spam without further classification.
    #[command(subcommand)]
    Blacklist(admin::ListCommand),
    /// Senders whose messages can never become spam.
    #[command(subcommand)]
    Allowlist(admin::ListCommand),
    /// Rules file tools.
    #[command(subcommand)]
    Rules(admin::RulesCommand),
    /// Input that could not be processed.
    #[command(subcommand)]
    Quarantine(admin::QuarantineCommand),
    /// Train the ML model on labelled corpora and write it to a model directory.
    Train(model_cmd::TrainArgs),
    /// Masscheck-style report of rules, model and both on labelled corpora.
    Eval(model_cmd::EvalArgs),
    /// Label a stored message with its true class; the model learns from it.
    Learn(model_cmd::LearnArgs),
    /// The model's update history.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Deals made from converted leads: list, show, close as won or lost.
    #[command(subcommand)]
    Deals(sales::DealsCommand),
    /// Ad spend by date, source and campaign (CSV import).
    #[command(subcommand)]
    Spend(sales::SpendCommand),
    /// The management reports for a period (table, JSON or CSV).
    Report(sales::ReportArgs),
    /// People who log in to the web UI, with their roles.
    #[command(subcommand)]
    Users(users::UsersCommand),
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LEADSIFT_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("LEADSIFT_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        // A closed pipe (`leadsift classify … | head`) is the reader's choice, not an error.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // `rules check` must work on a broken setup: it needs no settings.
    if let Command::Rules(command) = &cli.command {
        return admin::rules(command);
    }
    let settings = config::Settings::load(cli.config.as_deref(), cli.db.as_deref())?;
    match cli.command {
        Command::Classify(args) => classify::run(&settings, args),
        Command::Import(args) => import::run(&settings, args).await,
        Command::Run(args) => run::run(settings, args).await,
        Command::Leads(command) => admin::leads(&settings, command).await,
        Command::Blacklist(command) => admin::list(&settings, leadsift_core::ListKind::Blacklist, command).await,
        Command::Allowlist(command) => admin::list(&settings, leadsift_core::ListKind::Allowlist, command).await,
        Command::Quarantine(command) => admin::quarantine(&settings, command).await,
        Command::Train(args) => model_cmd::train_command(&settings, args),
        Command::Eval(args) => model_cmd::eval_command(&settings, args),
        Command::Learn(args) => model_cmd::learn_command(&settings, args).await,
        Command::Model(command) => model_cmd::model_command(&settings, command).await,
        Command::Deals(command) => sales::deals(&settings, command).await,
        Command::Spend(command) => sales::spend(&settings, command).await,
        Command::Report(args) => sales::report(&settings, args).await,
        Command::Users(command) => users::users(&settings, command).await,
        Command::Rules(_) => unreachable!("handled above"),
    }
}
