//! Logging: text for people, JSON in a cluster; `RUST_LOG` filters.

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn,aws_config=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(fmt::layer().json().with_current_span(true).with_writer(std::io::stderr)).init(),
        LogFormat::Text => registry.with(fmt::layer().with_writer(std::io::stderr)).init(),
    }
}
