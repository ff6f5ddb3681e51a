#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc: the glibc allocator was a tenth of the request path under load (profile in
/// README "Performance"); the service allocates many small, short-lived objects.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Print the OpenAPI document.
    Openapi,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        println!("{}", chatkit_gateway::api::spec_json());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatkit-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log.format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => app::open_store(&settings).await.map(|_| {
            println!("migrations applied");
        }),
        Command::DevToken { user, ttl } => dev_token(&settings, &user, ttl),
        Command::Openapi => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatkit-gateway: {e:#}");
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
