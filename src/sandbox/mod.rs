//! The sandbox (`whatsapp-gateway sandbox`): the whole gateway on a laptop with no Meta account,
//! no token and no tunnel. It owns the wiring: a local double of Meta ([`meta`]) on a free
//! loopback port, the gateway started in the same process with a configuration of its own
//! (GRAPH_API_BASE pointing at the double, a fresh random APP_SECRET, an embedded store in its
//! own directory, never `config.env`'s real credentials), and the simulated customers
//! ([`customers`]) who write in at start and answer what is sent to them.
//!
//! Every webhook the double posts goes through the real `/webhook` (signed, parsed, stored), and
//! every send through the real `/v1/messages` and Graph client: only Meta is played.

pub mod customers;
pub mod meta;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;

use crate::config::Settings;
use crate::simulate::Receiver;
use crate::simulate::payload::Business;
use crate::startup::Application;

/// What the sandbox runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The gateway's port (0: any free one).
    pub port: u16,
    /// Where its embedded store lives.
    pub data_dir: PathBuf,
    /// API_KEY for the inbox's sign-in; `None`: an open inbox on loopback.
    pub api_key: Option<String>,
    /// Whether the customers write in at start.
    pub opening: bool,
    /// Meta's pace after a send.
    pub pace: meta::Pace,
}

/// A running sandbox: the gateway (to be run) and the double's address.
pub struct Sandbox {
    /// The gateway, built and listening.
    pub application: Application,
    /// The double of Meta.
    pub double: Arc<meta::Double>,
    /// Where the double listens.
    pub meta_address: SocketAddr,
    opening: bool,
}

impl Sandbox {
    /// Starts the double and builds the gateway against it.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let business = Business::default();
        let double = meta::Double::new(business.clone(), options.pace);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the sandbox's Meta on 127.0.0.1")?;
        let meta_address = listener.local_addr()?;
        let base = format!("http://{meta_address}");
        let _ = double.base.set(base.clone());
        let router = meta::router(double.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error.message = %e, "sandbox.meta_stopped");
            }
        });

        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).context("the operating system's random source")?;
        let app_secret = hex::encode(secret);
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", options.port.to_string()),
            ("ACCESS_TOKEN", meta::ACCESS_TOKEN.to_owned()),
            ("PHONE_NUMBER_ID", business.phone_number_id.clone()),
            (
                "DISPLAY_PHONE_NUMBER",
                business.display_phone_number.clone(),
            ),
            ("BUSINESS_ACCOUNT_ID", business.waba_id.clone()),
            ("APP_SECRET", app_secret.clone()),
            ("VERIFY_TOKEN", "sandbox-verify-token".to_owned()),
            ("GRAPH_API_BASE", format!("{base}/v22.0")),
            ("DATA_DIR", options.data_dir.display().to_string()),
            // Within what the double keeps (the form's overhead on top), so an upload too large
            // for it is the gateway's own 413, as it would be for Meta's limit.
            (
                "MEDIA_UPLOAD_MAX_BYTES",
                (meta::MAX_MEDIA_BYTES as u64 - crate::http::edge::UPLOAD_FORM_OVERHEAD)
                    .to_string(),
            ),
        ]);
        if let Some(key) = &options.api_key {
            vars.insert("API_KEY", key.clone());
        }
        let settings =
            Settings::from_lookup(|k| vars.get(k).cloned()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let application = Application::build(settings).await?;
        let webhook = Receiver::new(
            format!("http://127.0.0.1:{}/webhook", application.port()),
            Some(&SecretString::from(app_secret)),
            Duration::from_secs(10),
        )
        .context("building the webhook client")?;
        let _ = double.webhook.set(webhook);
        Ok(Self {
            application,
            double,
            meta_address,
            opening: options.opening,
        })
    }

    /// The gateway's port.
    pub fn port(&self) -> u16 {
        self.application.port()
    }

    /// Serves until `shutdown` completes; the customers write in once it listens.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if self.opening {
            let double = self.double.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                for (at, customer, what) in customers::opening() {
                    tokio::time::sleep_until(started + at).await;
                    let notification = double.with_factory(|f| {
                        let m = f.message(&customer, &what);
                        f.messages_notification(std::slice::from_ref(&customer), vec![m])
                    });
                    double.deliver(&notification).await;
                }
            });
        }
        Ok(self.application.run_until_stopped(shutdown).await?)
    }
}

/// `whatsapp-gateway sandbox`: the gateway with a built-in Meta, for trying it out.
///
/// Nothing leaves this machine: Meta is played by a local double, which answers sends as Meta
/// does, posts the sent, delivered and read statuses back (signed) and lets the customers answer.
/// Your config.env is not read: no real token or number is used.
#[derive(Debug, clap::Parser)]
#[command(name = "whatsapp-gateway sandbox")]
struct Cli {
    /// The gateway's port [default: $PORT, else 8000].
    #[arg(long, env = "PORT", default_value_t = 8000)]
    port: u16,
    /// Its embedded store (kept apart from ./data).
    #[arg(long, value_name = "DIR", default_value = "./sandbox-data")]
    data_dir: PathBuf,
    /// Require this key to sign in to the inbox [default: an open inbox on 127.0.0.1].
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// The customers do not write in at start (they still answer).
    #[arg(long)]
    quiet_customers: bool,
}

/// `whatsapp-gateway sandbox [flags]`: 2 for a bad flag (or a bad $PORT), naming it.
pub async fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let argv = std::iter::once("whatsapp-gateway sandbox".to_owned()).chain(args);
    let cli = match <Cli as clap::Parser>::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let options = Options {
        port: cli.port,
        data_dir: cli.data_dir,
        api_key: cli.api_key,
        opening: !cli.quiet_customers,
        pace: meta::Pace::default(),
    };
    let customers = if options.opening {
        "customers Ana, Kerry and Luis will write in"
    } else {
        "the customers answer what you send them"
    };
    crate::telemetry::init(crate::config::LogFormat::Pretty);
    let sandbox = match Sandbox::start(options).await {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Sandbox running: open http://127.0.0.1:{}/inbox\n\
         (Meta is played locally on {}; {customers}. Ctrl-C stops.)",
        sandbox.port(),
        sandbox.meta_address
    );
    match sandbox
        .run_until_stopped(crate::startup::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
