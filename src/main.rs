//! Entry point: load `config.env` / `.env`, read settings, start logging, serve until SIGTERM or
//! Ctrl-C. Everything else lives in the library.

use std::process::ExitCode;

use whatsapp_gateway::config::Settings;
use whatsapp_gateway::startup::Application;
use whatsapp_gateway::telemetry;

/// mimalloc instead of glibc's malloc: under load glibc spent about a third of the gateway's CPU
/// in `malloc`/`free`/`malloc_consolidate` (perf, outgoing-webhook scenario of `scripts/bench`);
/// BENCHMARKS.md has the before and after.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str =
    "whatsapp-gateway: WhatsApp Cloud API gateway (drop-in for the FastAPI + Redis server)

Usage: whatsapp-gateway            serve (configuration from config.env, .env and the environment)
       whatsapp-gateway sandbox    the gateway with a built-in Meta and simulated customers: try the
                                   inbox with no Meta account (`sandbox --help`)
       whatsapp-gateway healthcheck
                                   exit 0 if the server on 127.0.0.1:$PORT is ready (for Docker;
                                   in a container, a loopback HOST fails it)
       whatsapp-gateway simulate <kind> [flags]
                                   post Meta-shaped, signed webhooks to any receiver (default
                                   this gateway) or test its GET handshake (`simulate verify`);
                                   `simulate --help` lists the kinds
       whatsapp-gateway doctor [--fix] [--public-url URL] [--json]
                                   check the set-up (configuration, store, token, numbers,
                                   the app's subscription to each WABA) and print the fix for
                                   each problem; exit 0 when nothing failed
       whatsapp-gateway --help     this text
       whatsapp-gateway --version  the version

See README.md and config.env.example for every variable.";

#[tokio::main]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("healthcheck") => return healthcheck().await,
        Some("sandbox") => return whatsapp_gateway::sandbox::run(std::env::args().skip(2)).await,
        Some("simulate") => {
            return whatsapp_gateway::simulate::cli::run(std::env::args().skip(2)).await;
        }
        Some("doctor") => {
            return whatsapp_gateway::doctor::cli::run(std::env::args().skip(2)).await;
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("whatsapp-gateway {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    // Files fill in only what the real environment does not set.
    if let Some(problem) = whatsapp_gateway::config::load_env_files().1.first() {
        eprintln!("error: {problem}");
        return ExitCode::from(2);
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    for warning in settings.warnings() {
        tracing::warn!("config.warning {warning}");
    }
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error.cause_chain = ?e, "server.start_failed");
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = app
        .run_until_stopped(whatsapp_gateway::startup::shutdown_signal())
        .await
    {
        tracing::error!(error.message = %e, "server.failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `healthcheck`: GET /readyz on the local port, for container health checks (the runtime image
/// has no curl). Inside a container, a loopback HOST fails it at once: /readyz would answer here,
/// but the published port would not.
async fn healthcheck() -> ExitCode {
    let _ = dotenvy::from_filename("config.env");
    let in_container = std::path::Path::new("/.dockerenv").exists();
    if let Some(problem) = loopback_in_container(in_container, std::env::var("HOST").ok()) {
        eprintln!("{problem}");
        return ExitCode::FAILURE;
    }
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8000);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build();
    let url = format!("http://127.0.0.1:{port}/readyz");
    match client.map(|c| c.get(&url)) {
        Ok(request) => match request.send().await {
            Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
            Ok(response) => {
                eprintln!("{url}: {}", response.status());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("{url}: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Why a container listening on loopback is unhealthy, if it is one (`HOST` as set, if set).
fn loopback_in_container(in_container: bool, host: Option<String>) -> Option<String> {
    let host = host.filter(|h| !h.trim().is_empty());
    let loopback = match host.as_deref().map(str::trim) {
        None => true, // the default, 127.0.0.1
        Some("localhost") => true,
        Some(h) => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
    };
    (in_container && loopback).then(|| {
        format!(
            "HOST is {} inside a container: the published port cannot reach a loopback listener. \
             Set HOST=0.0.0.0 (the image's default; comment HOST out of the --env-file config.env).",
            host.as_deref().unwrap_or("unset (default 127.0.0.1)")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::loopback_in_container;

    #[test]
    fn a_loopback_host_fails_the_healthcheck_only_inside_a_container() {
        for host in [
            None,
            Some(""),
            Some("127.0.0.1"),
            Some("localhost"),
            Some("::1"),
        ] {
            let host = host.map(str::to_owned);
            let problem = loopback_in_container(true, host.clone()).expect("a problem");
            assert!(problem.contains("HOST=0.0.0.0"), "{problem}");
            assert_eq!(loopback_in_container(false, host), None);
        }
        for host in ["0.0.0.0", "::", "10.0.0.5"] {
            assert_eq!(loopback_in_container(true, Some(host.to_owned())), None);
        }
    }
}
