//! `integro-bench`: load generators for Integro.
//!
//! - `ingest` signs and posts Twilio WhatsApp webhooks (each with a new
//!   message id, so nothing is a duplicate) at maximum concurrency or at a
//!   fixed rate and reports throughput and acknowledgement latency. The same
//!   generator runs against Integro and against the reference servers, so
//!   figures can be stated as ratios.
//! - `e2e` runs Integro itself against a built-in mock of the providers and
//!   measures the whole loop: webhook in, reply out (see bench/README.md).
//!   It exits non-zero when a target is missed (its summary says FAIL).
//! - `mock-provider` stands in for the providers' send APIs when Integro's
//!   workers run during another benchmark.

mod e2e;
mod ingest;
mod mock;
mod plot;
mod process;
mod report;
mod webhooks;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "integro-bench", about = "Load generators for Integro")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Post signed Twilio webhooks and measure.
    Ingest(ingest::IngestArgs),
    /// Run Integro against a mock provider under a fixed rate of signed
    /// webhooks on three channels, and measure until the replies go out.
    E2e(e2e::E2eArgs),
    /// Answer Twilio, WhatsApp Cloud (under /graph) and Instagram (under
    /// /instagram) sends as the real APIs do, counting them (`GET /count`).
    MockProvider {
        #[arg(long, default_value = "127.0.0.1:3999")]
        listen: String,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Ingest(args) => {
                let report = ingest::ingest(args).await?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            Command::E2e(args) => e2e::run(args).await,
            Command::MockProvider { listen } => {
                let listener = tokio::net::TcpListener::bind(&listen).await?;
                eprintln!("mock provider on {listen}");
                axum::serve(listener, mock::Mock::new(false).router()).await?;
                Ok(())
            }
        }
    })
}
