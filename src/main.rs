//! The `courier` binary: parses the command line and hands each command to
//! courier-app, which does everything else.
//!
//! Architecture invariant: argument parsing only. What a command does lives in
//! app/ (and the library crates below it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use courier_app::config::Config;

// mimalloc: replays and processors free on one thread what reader threads
// allocated, which glibc's per-thread arenas make slow (lock + consolidate on every
// cross-arena free). See BENCHMARKS.md, "Embedded log".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// courier: the event log of a messaging platform, and the processors that fold it
/// into views.
#[derive(Debug, Parser)]
#[command(name = "courier", version, about)]
struct Cli {
    /// Data directory for everything kept on local disk (embedded log, views).
    /// Overrides `data_dir` of the config and COURIER_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Configuration file (TOML). Without one, everything is embedded under --data.
    #[arg(long, global = true, value_name = "FILE", env = "COURIER_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka: this instance's `group.instance.id` (static membership: restarted
    /// within the session timeout, it takes its partitions back without a
    /// rebalance). One per running instance, never shared. Overrides
    /// COURIER_INSTANCE_ID.
    #[arg(long, global = true, value_name = "ID")]
    instance_id: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish canonical JSON lines (one event per line) to the log.
    Produce(courier_app::produce::Args),
    /// Write a range of a topic out as canonical JSON lines or an Avro file.
    Replay(courier_app::replay::Args),
    /// Run a processor in its consumer group.
    Run(courier_app::run::Args),
    /// How far each processor's consumer group is behind the end of the log.
    Lag(courier_app::lag::Args),
    /// A user's latest presence.
    Presence(courier_app::presence::Args),
    /// A user's inbox: one row per conversation they are or were a member of.
    Inbox(courier_app::inbox::Args),
    /// A conversation's messages as one of its (former) members sees them.
    Messages(courier_app::messages::Args),
    /// Build a fresh generation of a view from the start of the log, then switch
    /// reads to it.
    Rebuild(courier_app::rebuild::Args),
    /// Full-text search over the messages a user may see.
    Search(courier_app::search::Args),
    /// Apply the view store's schema migrations not yet applied (Cassandra); safe
    /// to rerun.
    Migrate(courier_app::migrate::Args),
    /// The whole platform in one process: the HTTP/WebSocket gateway and every
    /// processor (embedded by default), until Ctrl-C / SIGTERM.
    Up(courier_app::up::Args),
    /// Print a bearer token for USER that `courier up` with the same --data /
    /// --config accepts.
    Token(courier_app::token::Args),
    /// Load generator and end-to-end benchmark: simulated users send messages
    /// while the processors run in this process; prints throughput and latency
    /// per view.
    Bench(courier_app::bench::Args),
    /// The effective configuration (file, environment, flags and defaults) as
    /// TOML, secrets masked.
    Config,
    /// The topic catalog.
    Topics {
        #[command(subcommand)]
        command: courier_app::topics::Command,
    },
    /// Consumer groups: members, partitions, committed offsets and lag; move a
    /// stopped group's offsets.
    Groups {
        #[command(subcommand)]
        command: courier_app::groups::Command,
    },
    /// Records no processor could apply: list them, take them back to the
    /// processor that rejected them.
    DeadLetters {
        #[command(subcommand)]
        command: courier_app::dead_letters::Command,
    },
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(dir) = &cli.data {
        config.data_dir = dir.clone();
    }
    if let Some(id) = &cli.instance_id {
        config
            .set_instance_id(id.clone())
            .context("--instance-id")?;
    }
    Ok(config)
}

/// The `--data` / `--config` flags this command was given, for commands that
/// print how to run another one against the same setup.
fn cli_flags(cli: &Cli) -> String {
    let mut s = String::new();
    if let Some(d) = &cli.data {
        s.push_str(&format!(" --data {}", d.display()));
    }
    if let Some(c) = &cli.config {
        s.push_str(&format!(" --config {}", c.display()));
    }
    s
}

fn init_tracing(default: &str) {
    // Logs go to stderr so stdout stays clean for JSON and Avro output.
    let filter = tracing_subscriber::EnvFilter::try_from_env("COURIER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(&cli)?;
    courier_app::metrics::init();
    let flags = cli_flags(&cli);
    match cli.command {
        Command::Produce(args) => {
            let log = config.open_log().context("opening the log")?;
            let journals = courier_app::produce::Journals {
                dir: config.produce_dir(),
                log_identity: config.log_identity(),
            };
            courier_app::produce::run(&*log, journals, args).await
        }
        Command::Replay(args) => {
            let log = config.open_log().context("opening the log")?;
            courier_app::replay::run(log, args).await
        }
        Command::Run(args) => {
            let log = config.open_log().context("opening the log")?;
            courier_app::run::run(&config, log, args).await
        }
        Command::Presence(args) => courier_app::presence::run(&config, args),
        Command::Inbox(args) => courier_app::inbox::run(&config, args).await,
        Command::Messages(args) => courier_app::messages::run(&config, args).await,
        Command::Search(args) => courier_app::search::run(&config, args).await,
        Command::Rebuild(args) => {
            let log = config.open_log().context("opening the log")?;
            courier_app::rebuild::run(&config, log, args).await
        }
        Command::Lag(args) => courier_app::lag::run(&config, args).await,
        Command::Migrate(args) => courier_app::migrate::run(&config, args).await,
        Command::Topics { command } => courier_app::topics::run(&config, command).await,
        Command::Groups { command } => courier_app::groups::run(&config, command).await,
        Command::DeadLetters { command } => courier_app::dead_letters::run(&config, command).await,
        Command::Up(args) => {
            let log = config.open_log().context("opening the log")?;
            courier_app::up::run(&config, &flags, log, args).await
        }
        Command::Config => {
            print!("{}", config.to_masked_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(args) => courier_app::token::run(&config, args),
        Command::Bench(args) => courier_app::bench::run(&config, cli.config.as_deref(), args).await,
    }
}

fn main() -> ExitCode {
    courier_pipeline::alloc::tune();
    let cli = Cli::parse();
    // Long-running commands say what they do; one-shot commands only warn.
    init_tracing(
        if matches!(
            cli.command,
            Command::Run(_) | Command::Rebuild(_) | Command::Up(_)
        ) {
            "info"
        } else {
            "warn"
        },
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
