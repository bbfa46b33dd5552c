//! Logging set-up: `tracing` to stdout, pretty or JSON (LOG_FORMAT), filtered by RUST_LOG
//! (default `info`). Event names follow the FastAPI original (`webhook.store success`,
//! `messages.fetch success`, …) so its troubleshooting guide still applies.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
