#![forbid(unsafe_code)]

use std::process::ExitCode;

/// jemalloc. The glibc allocator was a tenth of the request path under load (bench/RESULTS.md,
/// "First profiles"). mimalloc, used before, was as fast, but after a storm of streams it kept
/// ~50 MiB resident for good: its 64 KiB pages stay whole while any object in them lives.
/// jemalloc's smaller slabs and its background purge thread bring the process back to near
/// its idle figure within seconds (settings in .cargo/config.toml). It is built unprefixed, as
/// the process's `malloc` too, so the bundled SQLite allocates from it rather than from glibc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use chatkit_gateway::{app, auth::AuthService, config::AppEnv, telemetry, Application, Settings};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(
    name = "chatkit-gateway",
    version,
    about = "Backend-for-frontend for ChatKit-style chat UIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print an upstream-style HS256 token signed with BETTER_AUTH_SECRET (development only).
    DevToken {
        /// The user id to put in `sub`.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the OpenAPI document (with the REST API under `server.api_prefix`).
    Openapi,
    /// Exit 0 if the service on the configured port is ready (GET /readyz answers 200),
    /// else 1. For container health checks: the image has no curl.
    Healthcheck {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

/// The configuration could not be loaded or was refused.
const EXIT_CONFIG: u8 = 2;
/// The command line could not be parsed (sysexits.h `EX_USAGE`): distinct from
/// [`EXIT_CONFIG`], which is clap's own code for it.
const EXIT_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` arrive here too, to stdout and with success.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Some(Command::Openapi) = cli.command {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        return match Settings::document_paths_from(&vars) {
            Ok((prefix, chatkit)) => {
                print_openapi(&chatkit_gateway::api::Paths::new(&prefix, &chatkit))
            }
            Err(e) => {
                eprintln!("chatkit-gateway: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatkit-gateway: {e}");
            // Docker reserves health check status 2; a check that cannot run is a failure.
            if let Some(Command::Healthcheck { .. }) = cli.command {
                return ExitCode::FAILURE;
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Command::Healthcheck { timeout_ms }) = cli.command {
        // No telemetry: the container runtime keeps this output as the check's result.
        return healthcheck(&settings, timeout_ms).await;
    }
    telemetry::init(settings.log.format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => app::open_store(&settings).await.map(|_| {
            println!("migrations applied");
        }),
        Command::DevToken { user, ttl } => dev_token(&settings, &user, ttl),
        Command::Openapi | Command::Healthcheck { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatkit-gateway: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: database errors repeat their source's text in
/// their own message, so `{:#}` printed one failure three or four times.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `println!` panics when stdout is closed early (`openapi | head`); a reader that stops
/// reading is not an error, so a broken pipe exits 0 quietly.
fn print_openapi(paths: &chatkit_gateway::api::Paths) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let doc = chatkit_gateway::api::spec_json_for(paths);
    match writeln!(out, "{doc}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatkit-gateway: cannot write the document: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /readyz` on this machine at the configured port.
async fn healthcheck(settings: &Settings, timeout_ms: u64) -> ExitCode {
    let url = format!("{}/readyz", settings.local_url(settings.server.port));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .no_proxy()
        .build();
    let result = match client {
        Ok(client) => client.get(&url).send().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(resp) if resp.status().is_success() => {
            println!("ready ({url})");
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            println!("not ready ({url}): {status} {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("not ready ({url}): {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until_stopped().await?;
    Ok(())
}

fn dev_token(settings: &Settings, user: &str, ttl: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.env != AppEnv::Production,
        "dev-token is disabled when APP_ENV=production"
    );
    let secret = settings.upstream.hs256_secret.expose_secret();
    anyhow::ensure!(!secret.is_empty(), "BETTER_AUTH_SECRET is empty");
    anyhow::ensure!(
        chatkit_gateway::domain::UserId::parse(user).is_some(),
        "--user must be 1 to 255 characters without control characters"
    );
    println!("{}", AuthService::dev_upstream_token(secret, user, ttl));
    Ok(())
}
