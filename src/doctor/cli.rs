//! `whatsapp-gateway doctor [--fix] [--public-url URL] [--json]`: the doctor's command line. It
//! reads the configuration as the server does (`config.env`, then `.env`, the environment
//! winning), runs [`diagnose`] and prints the checklist (or JSON). The exit status is 0 when no
//! check failed (warnings allowed), 1 when one did, 2 for a usage error.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use super::checks::{Options, Source, diagnose};

const ABOUT: &str =
    "Checks a real set-up (configuration, store, Meta) and says how to fix each problem";

const LONG_ABOUT: &str = "\
Checks a real set-up and prints a checklist with the fix for each failure: the configuration
parses; APP_SECRET and API_KEY are set; the store answers; and at Meta, for every configured
business number: the access token is valid, not about to expire and has the
whatsapp_business_messaging permission; the phone number exists, with its quality rating and
messaging limit; it belongs to its WhatsApp Business Account (WABA); and the app is subscribed to
the WABA (without a subscription Meta sends no webhooks at all: --fix subscribes it).

Configuration comes from config.env, .env and the environment, as for the server. Secrets are
never printed. Exits 0 when nothing failed (warnings allowed), 1 otherwise, 2 on bad usage.";

const EXAMPLES: &str = "\
Examples:
  whatsapp-gateway doctor
  whatsapp-gateway doctor --fix                  subscribe the app where it is not
  whatsapp-gateway doctor --public-url https://abc123.ngrok.app/webhook
  whatsapp-gateway doctor --json | jq '.checks[] | select(.outcome == \"fail\")'";

/// The doctor's command line.
#[derive(Debug, Parser)]
#[command(
    name = "whatsapp-gateway doctor",
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    disable_version_flag = true
)]
pub struct Cli {
    /// Subscribe the app to every WABA it is not subscribed to (POST /{waba_id}/subscribed_apps)
    #[arg(long)]
    pub fix: bool,
    /// Also run Meta's webhook handshake (GET with VERIFY_TOKEN) through this public URL, the
    /// Callback URL Meta calls (e.g. https://abc123.ngrok.app/webhook)
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Print {"ok": bool, "checks": [{key, subject, name, outcome, detail, fix}]} instead of
    /// the checklist
    #[arg(long)]
    pub json: bool,
}

/// Runs `doctor` with the arguments after `doctor`.
pub async fn run(args: impl IntoIterator<Item = String>) -> ExitCode {
    let argv = std::iter::once("whatsapp-gateway doctor".to_owned()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // Files fill in only what the real environment does not set (as for the server).
    let (read, errors) = crate::config::load_env_files();
    let source = Source {
        files: read.into_iter().map(str::to_owned).collect(),
        errors,
    };
    let options = Options {
        fix: cli.fix,
        public_url: cli.public_url,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    let report = diagnose(|k| std::env::var(k).ok(), &source, &options).await;
    let text = if cli.json {
        report.json() + "\n"
    } else {
        report.human()
    };
    // Not print!: a closed pipe (`doctor | head`) must not panic; the exit status still tells.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        let cli =
            Cli::try_parse_from(["doctor", "--fix", "--public-url", "https://x/webhook"]).unwrap();
        assert!(cli.fix && !cli.json);
        assert_eq!(cli.public_url.as_deref(), Some("https://x/webhook"));
        assert!(Cli::try_parse_from(["doctor", "extra"]).is_err());
        assert!(Cli::try_parse_from(["doctor", "--public-url"]).is_err());
    }
}
