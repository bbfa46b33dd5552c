//! `whatsapp-gateway simulate <kind> [flags]`: the command line of the simulator. It reads its
//! defaults from `config.env`, `.env` and the environment ([`Defaults`]), builds the deliveries of
//! the chosen kind with [`Factory`], posts them one after another (in order: out-of-order statuses
//! depend on it) and prints, per POST, the ids it carried, the HTTP status, the time taken and
//! the (bounded) answer. The exit status is 0 when every POST got a 2xx (for `verify`: when the
//! challenge came back), 1 otherwise, 2 for a usage error. The app secret and the verify token
//! are never printed.

/// `println!` that does not panic when stdout is closed (`simulate all | head -1`): what is
/// left of the report is dropped and the command goes on to its exit status.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::simulate::deliver::{Answer, Delivery, Receiver, replay};
use crate::simulate::payload::{
    Business, Customer, DEFAULT_CUSTOMER_NAME, DEFAULT_CUSTOMER_PHONE,
    DEFAULT_DISPLAY_PHONE_NUMBER, DEFAULT_PHONE_NUMBER_ID, DEFAULT_WABA_ID, Factory, Inbound,
    Status, StatusError,
};
use crate::simulate::verify;

const ABOUT: &str = "Posts Meta-shaped, signed WhatsApp Cloud API webhooks to any receiver";

const LONG_ABOUT: &str = "\
Posts Meta-shaped WhatsApp Cloud API webhooks to any URL (default: the local gateway), signed
like Meta signs them (X-Hub-Signature-256 over the exact bytes, ASCII-escaped JSON as Meta sends
it), and answers Meta's GET handshake test (`verify`). Works against any webhook receiver.

Defaults come from config.env, .env and the environment: PORT (the URL), APP_SECRET,
VERIFY_TOKEN, PHONE_NUMBER_ID, DISPLAY_PHONE_NUMBER, BUSINESS_ACCOUNT_ID. Without an app secret
the webhooks go out unsigned (with a warning).

Prints, per POST, the ids it carried, the HTTP status, the time taken and the answer. Exits 0
when every POST got a 2xx (verify: when the challenge came back), 1 otherwise, 2 on bad usage.";

const EXAMPLES: &str = "\
Examples:
  whatsapp-gateway simulate text --text 'Hi there'
  whatsapp-gateway simulate all                      one of every message type
  whatsapp-gateway simulate image --bsuid US.13491208655302741918   sender without a phone
  whatsapp-gateway simulate status failed --message-id wamid.X --code 131047
  whatsapp-gateway simulate batch --count 50
  whatsapp-gateway simulate duplicate --repeat 3
  whatsapp-gateway simulate out-of-order --message-id wamid.X
  whatsapp-gateway simulate replay --file captured.json
  whatsapp-gateway simulate verify --url https://example.com/webhook --verify-token TOKEN";

/// The simulator's command line.
#[derive(Debug, Parser)]
#[command(
    name = "whatsapp-gateway simulate",
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    disable_version_flag = true,
    subcommand_value_name = "KIND",
    subcommand_help_heading = "Kinds"
)]
pub struct Cli {
    /// What to send.
    #[command(subcommand)]
    pub kind: Kind,
    #[command(flatten)]
    pub common: Common,
}

/// Flags every kind takes (before or after the kind).
#[derive(Debug, Args)]
pub struct Common {
    /// Where to post [default: http://127.0.0.1:$PORT/webhook, PORT from config.env or the
    /// environment, else 8000]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Meta app secret to sign with [default: APP_SECRET from config.env, .env or the
    /// environment]
    #[arg(long, global = true, value_name = "SECRET")]
    pub app_secret: Option<String>,
    /// Send without X-Hub-Signature-256 even when an app secret is known
    #[arg(long, global = true)]
    pub unsigned: bool,
    /// The customer's phone number (wa_id, digits) [default: 16505551234, or none with --bsuid]
    #[arg(long, global = true, value_name = "NUMBER")]
    pub from: Option<String>,
    /// The customer's business-scoped user id (e.g. US.13491208655302741918); without --from the
    /// customer has no phone number (Meta withholds it)
    #[arg(long, global = true, value_name = "BSUID")]
    pub bsuid: Option<String>,
    /// The customer's profile name [default: Sheena Nelson]
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// metadata.phone_number_id [default: PHONE_NUMBER_ID, else 106540352242922]
    #[arg(long, global = true, value_name = "ID")]
    pub phone_number_id: Option<String>,
    /// metadata.display_phone_number [default: DISPLAY_PHONE_NUMBER, else 15550783881]
    #[arg(long, global = true, value_name = "NUMBER")]
    pub display_phone_number: Option<String>,
    /// entry[].id, the WhatsApp Business Account [default: BUSINESS_ACCOUNT_ID, else
    /// 102290129340398]
    #[arg(long, global = true, value_name = "ID")]
    pub waba_id: Option<String>,
    /// The text of text, edit, echo, referral, button, duplicate and batch messages
    #[arg(long, global = true, value_name = "TEXT")]
    pub text: Option<String>,
    /// The message a status, edit, revoke or reaction is about (without it, edit, revoke and
    /// reaction first send a text to refer to, and statuses use a new id)
    #[arg(long, global = true, value_name = "WAMID")]
    pub message_id: Option<String>,
    /// Seconds to wait for each answer
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
    /// Print the bodies and signatures instead of sending them
    #[arg(long, global = true)]
    pub dry_run: bool,
}

/// The kinds of delivery.
#[derive(Debug, Subcommand)]
pub enum Kind {
    /// A text message (--text); --reply-to quotes a message the business sent
    Text {
        /// The wamid of the message replied to
        #[arg(long, value_name = "WAMID")]
        reply_to: Option<String>,
    },
    /// An image (with a caption)
    Image {
        #[arg(long, default_value = "Is this the right part?")]
        caption: String,
    },
    /// A video (with a caption)
    Video {
        #[arg(long, default_value = "The noise it makes")]
        caption: String,
    },
    /// An audio file
    Audio,
    /// A voice note (audio with voice: true, ogg/opus)
    Voice,
    /// A document with a file name
    Document {
        #[arg(long, default_value = "invoice-2291.pdf")]
        filename: String,
        #[arg(long)]
        caption: Option<String>,
    },
    /// A sticker
    Sticker {
        #[arg(long)]
        animated: bool,
    },
    /// A location pin
    Location,
    /// A shared contact card
    Contacts,
    /// A tap on a reply button (interactive button_reply)
    ButtonReply {
        #[arg(long, default_value = "confirm-yes")]
        id: String,
        #[arg(long, default_value = "Yes, confirm")]
        title: String,
    },
    /// A pick from a list (interactive list_reply)
    ListReply {
        #[arg(long, default_value = "slot-0930")]
        id: String,
        #[arg(long, default_value = "09:30")]
        title: String,
        #[arg(long, default_value = "Tomorrow morning")]
        description: String,
    },
    /// A completed Flow (interactive nfm_reply)
    FlowReply {
        /// The Flow's answer, a JSON text
        #[arg(long, default_value = r#"{"flow_token":"flow-token-1","size":"M"}"#)]
        response_json: String,
    },
    /// A tap on a template's quick-reply button (button; its text is --text)
    Button {
        #[arg(long, default_value = "TRACK_ORDER")]
        payload: String,
    },
    /// A reaction to --message-id (or to a text sent first)
    Reaction {
        #[arg(long, default_value = "👍")]
        emoji: String,
        /// Remove the reaction instead (emoji "")
        #[arg(long)]
        remove: bool,
    },
    /// A cart from the catalog (order)
    Order,
    /// The customer changed their number (system user_changed_number)
    NumberChange {
        #[arg(long, value_name = "NUMBER", default_value = "16505559876")]
        new_number: String,
    },
    /// A text from a click-to-WhatsApp ad (referral)
    Referral,
    /// A message type WhatsApp does not support (unsupported, error 131051)
    Unsupported {
        #[arg(long, default_value = "poll")]
        subtype: String,
    },
    /// An edit of --message-id (or of a text sent first); the new text is --text
    Edit,
    /// A deletion of --message-id (or of a text sent first)
    Revoke,
    /// A user opening the chat for the first time (request_welcome)
    RequestWelcome,
    /// A message the business sent from the WhatsApp Business app (smb_message_echoes)
    Echo,
    /// A status of a message the business sent (--message-id)
    Status {
        #[arg(value_enum)]
        status: StatusArg,
        /// The error code of a failed status
        #[arg(long, default_value_t = 131047)]
        code: i64,
        /// The error title [default: Meta's title for the code]
        #[arg(long)]
        title: Option<String>,
        /// The error message [default: the title]
        #[arg(long)]
        error_message: Option<String>,
        /// error_data.details [default: Meta's text for the code]
        #[arg(long)]
        details: Option<String>,
    },
    /// Many messages in one POST, from several customers
    Batch {
        /// Messages in the POST (at most 1000)
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Distinct customers (numbers counting up from --from)
        #[arg(long, default_value_t = 3)]
        senders: usize,
    },
    /// The same signed body posted several times (Meta's retries)
    Duplicate {
        /// How many times to post it (at most 100)
        #[arg(long, default_value_t = 2)]
        repeat: usize,
        /// Post the copies at the same time instead of one after another (Meta delivers
        /// concurrently)
        #[arg(long)]
        concurrent: bool,
    },
    /// read, then delivered, then sent for one message, each its own POST
    OutOfOrder,
    /// Post a JSON file as it is (a JSON array: one POST per element)
    Replay {
        #[arg(long, value_name = "PATH")]
        file: String,
    },
    /// Meta's GET handshake: does the URL echo hub.challenge for the verify token?
    Verify {
        /// The token [default: VERIFY_TOKEN from config.env, .env or the environment]
        #[arg(long, value_name = "TOKEN")]
        verify_token: Option<String>,
    },
    /// One message of every type, each its own POST (with an echo they can refer to)
    All,
}

/// `status <STATUS>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// What the simulator takes from the configuration when a flag does not say.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// PORT (8000 when unset or not a port).
    pub port: u16,
    /// APP_SECRET.
    pub app_secret: Option<SecretString>,
    /// VERIFY_TOKEN.
    pub verify_token: Option<SecretString>,
    /// PHONE_NUMBER_ID.
    pub phone_number_id: Option<String>,
    /// DISPLAY_PHONE_NUMBER_<PHONE_NUMBER_ID>, else DISPLAY_PHONE_NUMBER, as digits.
    pub display_phone_number: Option<String>,
    /// BUSINESS_ACCOUNT_ID_<PHONE_NUMBER_ID>, else BUSINESS_ACCOUNT_ID.
    pub waba_id: Option<String>,
}

impl Defaults {
    /// Reads the variables through `lookup` (empty values count as unset, as for the server).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let phone_number_id = var("PHONE_NUMBER_ID");
        let per_number = |name: &str| {
            phone_number_id
                .as_ref()
                .and_then(|id| var(&format!("{name}_{id}")))
                .or_else(|| var(name))
        };
        Self {
            port: var("PORT").and_then(|p| p.parse().ok()).unwrap_or(8000),
            app_secret: var("APP_SECRET").map(SecretString::from),
            verify_token: var("VERIFY_TOKEN").map(SecretString::from),
            display_phone_number: per_number("DISPLAY_PHONE_NUMBER").map(|d| digits(&d)),
            waba_id: per_number("BUSINESS_ACCOUNT_ID"),
            phone_number_id,
        }
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Runs `simulate` with the arguments after `simulate`: loads `config.env` and `.env` (the
/// environment wins), parses the flags and sends.
pub async fn run(args: impl IntoIterator<Item = String>) -> ExitCode {
    let argv = std::iter::once("whatsapp-gateway simulate".to_owned()).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Some(problem) = crate::config::load_env_files().1.first() {
        eprintln!("error: {problem}");
        return ExitCode::from(2);
    }
    let defaults = Defaults::from_lookup(|k| std::env::var(k).ok());
    execute(cli, &defaults).await
}

/// Runs a parsed command line against `defaults`.
pub async fn execute(cli: Cli, defaults: &Defaults) -> ExitCode {
    let common = &cli.common;
    let url = common
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}/webhook", defaults.port));
    let timeout = Duration::from_secs(common.timeout.max(1));
    if let Kind::Verify { verify_token } = &cli.kind {
        return run_verify(&url, verify_token.as_deref(), defaults, timeout).await;
    }
    let customer = match customer_of(common) {
        Ok(customer) => customer,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let business = Business {
        waba_id: common
            .waba_id
            .clone()
            .or_else(|| defaults.waba_id.clone())
            .unwrap_or_else(|| DEFAULT_WABA_ID.to_owned()),
        phone_number_id: common
            .phone_number_id
            .clone()
            .or_else(|| defaults.phone_number_id.clone())
            .unwrap_or_else(|| DEFAULT_PHONE_NUMBER_ID.to_owned()),
        display_phone_number: common
            .display_phone_number
            .as_deref()
            .map(digits)
            .or_else(|| defaults.display_phone_number.clone())
            .unwrap_or_else(|| DEFAULT_DISPLAY_PHONE_NUMBER.to_owned()),
    };
    let mut factory = Factory::new(business);
    let deliveries = match deliveries(&cli.kind, common, &customer, &mut factory) {
        Ok(deliveries) => deliveries,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (secret, source) = match (&common.app_secret, &defaults.app_secret) {
        _ if common.unsigned => (None, "unsigned (--unsigned)"),
        (Some(flag), _) => (
            Some(SecretString::from(flag.clone())),
            "signed with --app-secret",
        ),
        (None, Some(configured)) => (Some(configured.clone()), "signed with APP_SECRET"),
        (None, None) => {
            eprintln!(
                "warning: no app secret (--app-secret or APP_SECRET): sending unsigned; a receiver that checks X-Hub-Signature-256 will refuse these"
            );
            (None, "unsigned")
        }
    };
    let receiver = match Receiver::new(url, secret.as_ref(), timeout) {
        Ok(receiver) => receiver,
        Err(e) => {
            eprintln!("error: cannot build an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    if common.dry_run {
        for (n, delivery) in deliveries.iter().enumerate() {
            print_delivery(n + 1, delivery);
            if let Some(signature) = receiver.signature(&delivery.body) {
                out!("    X-Hub-Signature-256: {signature}");
            }
            out!("    {}", String::from_utf8_lossy(&delivery.body));
        }
        return ExitCode::SUCCESS;
    }
    out!("POST {} ({source})", receiver.url());
    let concurrent = matches!(
        cli.kind,
        Kind::Duplicate {
            concurrent: true,
            ..
        }
    );
    let mut accepted = 0;
    let mut report = |answer: &Answer| {
        let status = answer
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "FAILED".to_owned());
        out!(
            "    {status} in {} ms: {}",
            answer.elapsed.as_millis(),
            answer.body
        );
        if answer.accepted() {
            accepted += 1;
        }
    };
    if concurrent {
        // Every copy goes out before any answer is read; the reports keep their order.
        let answers =
            futures_util::future::join_all(deliveries.iter().map(|d| receiver.post(&d.body))).await;
        for (n, (delivery, answer)) in deliveries.iter().zip(&answers).enumerate() {
            print_delivery(n + 1, delivery);
            report(answer);
        }
    } else {
        for (n, delivery) in deliveries.iter().enumerate() {
            print_delivery(n + 1, delivery);
            let answer = receiver.post(&delivery.body).await;
            report(&answer);
        }
    }
    if deliveries.len() > 1 {
        out!("{accepted} of {} POSTs answered 2xx", deliveries.len());
    }
    if accepted == deliveries.len() {
        ExitCode::SUCCESS
    } else {
        if deliveries.len() == 1 {
            eprintln!("error: the receiver did not answer 2xx");
        } else {
            eprintln!(
                "error: {} of {} POSTs were not answered 2xx",
                deliveries.len() - accepted,
                deliveries.len()
            );
        }
        ExitCode::FAILURE
    }
}

fn print_delivery(n: usize, delivery: &Delivery) {
    out!("[{n}] {} ({} bytes)", delivery.label, delivery.body.len());
    for (role, id) in &delivery.ids {
        out!("    {role} {id}");
    }
}

async fn run_verify(
    url: &str,
    flag: Option<&str>,
    defaults: &Defaults,
    timeout: Duration,
) -> ExitCode {
    use secrecy::ExposeSecret;
    let token = match (flag, &defaults.verify_token) {
        (Some(token), _) => token.to_owned(),
        (None, Some(token)) => token.expose_secret().to_owned(),
        (None, None) => {
            eprintln!("error: no verify token: pass --verify-token or set VERIFY_TOKEN");
            return ExitCode::from(2);
        }
    };
    let challenge = crate::simulate::wire::Rng::from_entropy().digits(10);
    out!("GET {url}?hub.mode=subscribe&hub.verify_token=(hidden)&hub.challenge={challenge}");
    let handshake = match verify::check(url, &token, &challenge, timeout).await {
        Ok(handshake) => handshake,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let status = handshake
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "FAILED".to_owned());
    match handshake.problem() {
        None => {
            out!(
                "    {status} in {} ms: challenge echoed; Meta would accept this URL",
                handshake.elapsed.as_millis()
            );
            ExitCode::SUCCESS
        }
        Some(problem) => {
            out!(
                "    {status} in {} ms: {}",
                handshake.elapsed.as_millis(),
                handshake.body
            );
            eprintln!("error: verification failed: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// The customer of the flags: `--from` and/or `--bsuid`, the default number when neither.
fn customer_of(common: &Common) -> Result<Customer, String> {
    let phone = match &common.from {
        Some(from) => {
            let d = digits(from);
            if d.is_empty() {
                return Err(format!("--from {from:?} has no digits"));
            }
            Some(d)
        }
        None if common.bsuid.is_some() => None,
        None => Some(DEFAULT_CUSTOMER_PHONE.to_owned()),
    };
    Ok(Customer {
        phone,
        bsuid: common.bsuid.clone(),
        name: common
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_CUSTOMER_NAME.to_owned()),
        username: None,
    })
}

/// The `n`-th customer of a batch: the first is `base`, the others count up from its number
/// (and BSUID).
fn nth_customer(base: &Customer, n: usize) -> Customer {
    const NAMES: [&str; 5] = [
        DEFAULT_CUSTOMER_NAME,
        "Pablo Morales",
        "Kerry Fisher",
        "Aiko Tanaka",
        "Omar Haddad",
    ];
    if n == 0 {
        return base.clone();
    }
    let bump = |number: &str| match number.parse::<u128>() {
        Ok(v) => (v + n as u128).to_string(),
        Err(_) => format!("{number}{n}"),
    };
    Customer {
        phone: base.phone.as_deref().map(bump),
        bsuid: base.bsuid.as_ref().map(|b| format!("{b}{n}")),
        name: NAMES[n % NAMES.len()].to_owned(),
        username: None,
    }
}

/// The most messages `batch --count` puts in one POST.
const MAX_BATCH: usize = 1000;
/// The most copies `duplicate --repeat` posts.
const MAX_REPEAT: usize = 100;

/// The POSTs of one kind, in the order they go out.
fn deliveries(
    kind: &Kind,
    common: &Common,
    customer: &Customer,
    f: &mut Factory,
) -> Result<Vec<Delivery>, String> {
    let text = |default: &str| common.text.clone().unwrap_or_else(|| default.to_owned());
    let who = format!(
        "from {}",
        customer
            .phone
            .as_deref()
            .or(customer.bsuid.as_deref())
            .unwrap_or("?")
    );
    let one = std::slice::from_ref(customer);
    let mut out = Vec::new();
    // A message the user sends, in its own POST.
    let mut inbound = |f: &mut Factory, what: Inbound, out: &mut Vec<Delivery>| -> String {
        let message = f.message(customer, &what);
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        let label = format!("{} {who}", what.label());
        out.push(Delivery::of(
            label,
            &f.messages_notification(one, vec![message]),
        ));
        id
    };
    // The message an edit, revoke or reaction is about: --message-id, else a text sent first.
    let target =
        |f: &mut Factory,
         out: &mut Vec<Delivery>,
         inbound: &mut dyn FnMut(&mut Factory, Inbound, &mut Vec<Delivery>) -> String| {
            match &common.message_id {
                Some(id) => id.clone(),
                None => inbound(
                    f,
                    Inbound::Text {
                        body: "Hi! Does it come in blue?".into(),
                        reply_to: None,
                    },
                    out,
                ),
            }
        };
    match kind {
        Kind::Text { reply_to } => {
            inbound(
                f,
                Inbound::Text {
                    body: text("Hi! Does it come in blue?"),
                    reply_to: reply_to.clone(),
                },
                &mut out,
            );
        }
        Kind::Image { caption } => {
            inbound(
                f,
                Inbound::Image {
                    caption: Some(caption.clone()),
                },
                &mut out,
            );
        }
        Kind::Video { caption } => {
            inbound(
                f,
                Inbound::Video {
                    caption: Some(caption.clone()),
                },
                &mut out,
            );
        }
        Kind::Audio => {
            inbound(f, Inbound::Audio, &mut out);
        }
        Kind::Voice => {
            inbound(f, Inbound::Voice, &mut out);
        }
        Kind::Document { filename, caption } => {
            inbound(
                f,
                Inbound::Document {
                    filename: filename.clone(),
                    caption: caption.clone(),
                },
                &mut out,
            );
        }
        Kind::Sticker { animated } => {
            inbound(
                f,
                Inbound::Sticker {
                    animated: *animated,
                },
                &mut out,
            );
        }
        Kind::Location => {
            inbound(
                f,
                Inbound::Location {
                    latitude: 37.483_872,
                    longitude: -122.148_358,
                    name: Some("Head office".into()),
                    address: Some("1 Hacker Way, Menlo Park, CA 94025".into()),
                },
                &mut out,
            );
        }
        Kind::Contacts => {
            inbound(f, Inbound::Contacts, &mut out);
        }
        Kind::ButtonReply { id, title } => {
            inbound(
                f,
                Inbound::ButtonReply {
                    id: id.clone(),
                    title: title.clone(),
                },
                &mut out,
            );
        }
        Kind::ListReply {
            id,
            title,
            description,
        } => {
            inbound(
                f,
                Inbound::ListReply {
                    id: id.clone(),
                    title: title.clone(),
                    description: Some(description.clone()),
                },
                &mut out,
            );
        }
        Kind::FlowReply { response_json } => {
            inbound(
                f,
                Inbound::FlowReply {
                    response_json: response_json.clone(),
                },
                &mut out,
            );
        }
        Kind::Button { payload } => {
            inbound(
                f,
                Inbound::Button {
                    text: text("Track my order"),
                    payload: payload.clone(),
                },
                &mut out,
            );
        }
        Kind::Reaction { emoji, remove } => {
            let message_id = target(f, &mut out, &mut inbound);
            let emoji = (!remove).then(|| emoji.clone());
            inbound(f, Inbound::Reaction { message_id, emoji }, &mut out);
        }
        Kind::Order => {
            inbound(f, Inbound::Order, &mut out);
        }
        Kind::NumberChange { new_number } => {
            let new_phone = digits(new_number);
            if new_phone.is_empty() {
                return Err(format!("--new-number {new_number:?} has no digits"));
            }
            inbound(
                f,
                Inbound::NumberChange {
                    new_phone,
                    new_bsuid: None,
                },
                &mut out,
            );
        }
        Kind::Referral => {
            inbound(
                f,
                Inbound::Referral {
                    body: text("Hi! Is the summer sale still on?"),
                },
                &mut out,
            );
        }
        Kind::Unsupported { subtype } => {
            inbound(
                f,
                Inbound::Unsupported {
                    subtype: subtype.clone(),
                },
                &mut out,
            );
        }
        Kind::Edit => {
            let original_message_id = target(f, &mut out, &mut inbound);
            inbound(
                f,
                Inbound::Edit {
                    original_message_id,
                    body: text("Hi! Does it come in blue, size M?"),
                },
                &mut out,
            );
        }
        Kind::Revoke => {
            let original_message_id = target(f, &mut out, &mut inbound);
            inbound(
                f,
                Inbound::Revoke {
                    original_message_id,
                },
                &mut out,
            );
        }
        Kind::RequestWelcome => {
            inbound(f, Inbound::RequestWelcome, &mut out);
        }
        Kind::Echo => {
            let echo = f.echo(customer, &text("On my way!"));
            let label = format!("echo to {}", customer.key());
            out.push(Delivery::of(label, &f.echoes_notification(one, vec![echo])));
        }
        Kind::Status {
            status,
            code,
            title,
            error_message,
            details,
        } => {
            let id = status_target(common, customer, f);
            let status = match status {
                StatusArg::Sent => Status::Sent,
                StatusArg::Delivered => Status::Delivered,
                StatusArg::Read => Status::Read,
                StatusArg::Failed => {
                    let mut error = StatusError::for_code(*code);
                    if let Some(title) = title {
                        error.title.clone_from(title);
                        error.message.clone_from(title);
                    }
                    if let Some(message) = error_message {
                        error.message.clone_from(message);
                    }
                    if let Some(details) = details {
                        error.details.clone_from(details);
                    }
                    Status::Failed(error)
                }
            };
            let label = match &status {
                Status::Failed(e) => format!("status failed ({}) to {}", e.code, customer.key()),
                other => format!("status {} to {}", other.as_str(), customer.key()),
            };
            let s = f.status(&id, customer, &status, f.now());
            out.push(Delivery::of(label, &f.statuses_notification(one, vec![s])));
        }
        Kind::Batch { count, senders } => {
            if *count == 0 {
                return Err("--count must be at least 1".into());
            }
            if *count > MAX_BATCH {
                return Err(format!("--count must be at most {MAX_BATCH}"));
            }
            let senders = (*senders).clamp(1, *count);
            let customers: Vec<Customer> =
                (0..senders).map(|n| nth_customer(customer, n)).collect();
            let base = text("Batch message");
            let messages = (0..*count)
                .map(|i| {
                    let what = Inbound::Text {
                        body: format!("{base} {} of {count}", i + 1),
                        reply_to: None,
                    };
                    f.message(&customers[i % senders], &what)
                })
                .collect();
            let label = format!("batch of {count} messages from {senders} customers");
            out.push(Delivery::of(
                label,
                &f.messages_notification(&customers, messages),
            ));
        }
        Kind::Duplicate { repeat, .. } => {
            if *repeat == 0 {
                return Err("--repeat must be at least 1".into());
            }
            if *repeat > MAX_REPEAT {
                return Err(format!("--repeat must be at most {MAX_REPEAT}"));
            }
            let what = Inbound::Text {
                body: text("Hi! Is anyone there?"),
                reply_to: None,
            };
            let message = f.message(customer, &what);
            let delivery = Delivery::of(
                format!("text {who}"),
                &f.messages_notification(one, vec![message]),
            );
            for n in 0..*repeat {
                let mut copy = delivery.clone();
                copy.label = format!("{}, delivery {} of {repeat}", delivery.label, n + 1);
                out.push(copy);
            }
        }
        Kind::OutOfOrder => {
            let id = status_target(common, customer, f);
            let now = f.now();
            // Meta's timestamps say sent < delivered < read; the POSTs arrive the other way.
            for (status, at) in [
                (Status::Read, now),
                (Status::Delivered, now - 1),
                (Status::Sent, now - 2),
            ] {
                let label = format!("status {} to {}", status.as_str(), customer.key());
                let s = f.status(&id, customer, &status, at);
                out.push(Delivery::of(label, &f.statuses_notification(one, vec![s])));
            }
        }
        Kind::Replay { file } => {
            let bytes = std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
            out = replay(file, bytes).map_err(|e| e.to_string())?;
        }
        Kind::All => {
            let echo = f.echo(customer, "We have it in blue and green.");
            let business_message = echo["id"].as_str().unwrap_or_default().to_owned();
            out.push(Delivery::of(
                format!("echo to {}", customer.key()),
                &f.echoes_notification(one, vec![echo]),
            ));
            let original = f.wamid(customer, false);
            for (i, what) in Inbound::every_kind(&original, &business_message)
                .into_iter()
                .enumerate()
            {
                let message = if i == 0 {
                    let now = f.now();
                    f.message_with(customer, &what, &original, now)
                } else {
                    f.message(customer, &what)
                };
                let label = format!("{} {who}", what.label());
                out.push(Delivery::of(
                    label,
                    &f.messages_notification(one, vec![message]),
                ));
            }
        }
        Kind::Verify { .. } => unreachable!("verify sends no webhook"),
    }
    Ok(out)
}

/// The message a status is about: `--message-id`, else a new id of a message the business sent
/// (said on stderr, since the receiver will not know it).
fn status_target(common: &Common, customer: &Customer, f: &mut Factory) -> String {
    match &common.message_id {
        Some(id) => id.clone(),
        None => {
            let id = f.wamid(customer, true);
            eprintln!(
                "note: no --message-id: the status is about a new id, unknown to the receiver; pass the wamid of a message you sent"
            );
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(vars: &[(&str, &str)]) -> Defaults {
        Defaults::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_come_from_the_configuration_and_empty_values_are_unset() {
        use secrecy::ExposeSecret;
        let d = defaults(&[
            ("PORT", "9001"),
            ("APP_SECRET", "s"),
            ("VERIFY_TOKEN", ""),
            ("PHONE_NUMBER_ID", "123"),
            ("DISPLAY_PHONE_NUMBER", "+1 555 000 1111"),
            ("BUSINESS_ACCOUNT_ID", "777"),
            ("BUSINESS_ACCOUNT_ID_123", "888"),
        ]);
        assert_eq!(d.port, 9001);
        assert_eq!(d.app_secret.unwrap().expose_secret(), "s");
        assert!(d.verify_token.is_none());
        assert_eq!(d.phone_number_id.as_deref(), Some("123"));
        assert_eq!(d.display_phone_number.as_deref(), Some("15550001111"));
        assert_eq!(
            d.waba_id.as_deref(),
            Some("888"),
            "the number's own WABA wins"
        );
        assert_eq!(defaults(&[("PORT", "eighty")]).port, 8000);
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("simulate").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_go_before_or_after_the_kind() {
        let a = parse(&["--from", "15551234567", "text", "--text", "hi"]);
        let b = parse(&["text", "--text", "hi", "--from", "15551234567"]);
        assert_eq!(a.common.from, b.common.from);
        assert_eq!(a.common.text.as_deref(), Some("hi"));
        assert!(Cli::try_parse_from(["simulate", "status", "pending"]).is_err());
        assert!(Cli::try_parse_from(["simulate"]).is_err());
    }

    #[test]
    fn only_a_bsuid_means_no_phone() {
        let c = customer_of(&parse(&["--bsuid", "US.1", "text"]).common).unwrap();
        assert_eq!((c.phone, c.bsuid.as_deref()), (None, Some("US.1")));
        let c = customer_of(&parse(&["text"]).common).unwrap();
        assert_eq!(c.phone.as_deref(), Some(DEFAULT_CUSTOMER_PHONE));
        let c = customer_of(&parse(&["--from", "+1 (555) 123-4567", "text"]).common).unwrap();
        assert_eq!(c.phone.as_deref(), Some("15551234567"));
        assert!(customer_of(&parse(&["--from", "abc", "text"]).common).is_err());
    }

    #[test]
    fn every_kind_builds_its_deliveries() {
        let cases: &[(&[&str], usize)] = &[
            (&["text"], 1),
            (&["edit"], 2),
            (&["edit", "--message-id", "wamid.X"], 1),
            (&["reaction", "--remove"], 2),
            (&["duplicate", "--repeat", "3"], 3),
            (&["out-of-order", "--message-id", "wamid.X"], 3),
            (&["batch", "--count", "7"], 1),
            (&["status", "failed", "--message-id", "wamid.X"], 1),
            (&["all"], 24),
        ];
        for (args, posts) in cases {
            let cli = parse(args);
            let customer = customer_of(&cli.common).unwrap();
            let mut f = Factory::new(Business::default());
            let out = deliveries(&cli.kind, &cli.common, &customer, &mut f).unwrap();
            assert_eq!(out.len(), *posts, "{args:?}");
        }
        // Duplicates are the same bytes.
        let cli = parse(&["duplicate"]);
        let customer = customer_of(&cli.common).unwrap();
        let mut f = Factory::new(Business::default());
        let out = deliveries(&cli.kind, &cli.common, &customer, &mut f).unwrap();
        assert_eq!(out[0].body, out[1].body);
    }

    #[test]
    fn batch_and_repeat_are_bounded() {
        let build = |args: &[&str]| {
            let cli = parse(args);
            let customer = customer_of(&cli.common).unwrap();
            let mut f = Factory::new(Business::default());
            deliveries(&cli.kind, &cli.common, &customer, &mut f).map(|out| out.len())
        };
        assert_eq!(
            build(&["batch", "--count", "1001"]),
            Err("--count must be at most 1000".to_owned())
        );
        assert_eq!(
            build(&["duplicate", "--repeat", "101"]),
            Err("--repeat must be at most 100".to_owned())
        );
        assert_eq!(build(&["batch", "--count", "1000"]), Ok(1));
        assert_eq!(build(&["duplicate", "--repeat", "100"]), Ok(100));
    }
}
