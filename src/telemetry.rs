//! Logging set-up: `tracing` to stdout, pretty or JSON (LOG_FORMAT), filtered by RUST_LOG
//! (default `info`). Event names follow the FastAPI original (`webhook.store success`,
//! `messages.fetch success`, …) so its troubleshooting guide still applies. Pretty logs are
//! coloured only when stdout is a terminal: piped to a file or a log collector they carry no ANSI
//! escape codes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
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
