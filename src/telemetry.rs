//! The one place that builds the tracing subscriber.

use tracing_subscriber::{filter::Targets, fmt, layer::Layer, prelude::*, EnvFilter, Registry};

use crate::config::LogFormat;

/// Installs the global subscriber; `RUST_LOG` wins over the default filter.
///
/// `RUST_LOG` filters the log output only: sqlx's pool-acquire reports reach the metrics
/// layer (`db_pool_acquire_seconds`) whatever the log level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let log: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        // Colour codes are noise in a file or a log collector.
        LogFormat::Pretty => fmt::layer()
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
    };
    let acquire_reports =
        Targets::new().with_target(crate::metrics::POOL_ACQUIRE_TARGET, tracing::Level::TRACE);
    let result = tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(crate::metrics::PoolAcquireLayer.with_filter(acquire_reports))
        .try_init();
    // A second init (tests building several apps) keeps the first subscriber.
    let _ = result;
}
