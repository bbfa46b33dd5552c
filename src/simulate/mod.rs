//! The webhook simulator (`whatsapp-gateway simulate`): Meta-shaped, correctly signed WhatsApp
//! Cloud API webhooks for any receiver, ours or not.
//!
//! It owns: the payload builders ([`payload`]: every inbound message type, echoes, statuses,
//! BSUID-only senders, the notification envelope), Meta's byte form of a body and the random
//! parts of payloads ([`wire`]), signing and posting ([`deliver`], replays of JSON files
//! included), the GET handshake test ([`verify`]) and the command line ([`cli`]).
//!
//! Invariants: a body is signed and sent as the exact bytes built (or read from a file), never
//! re-serialized in between; the app secret and the verify token never appear in any output.
//! The builders do no I/O, so other tools (a sandbox playing customers, tests) reuse them.

pub mod cli;
pub mod deliver;
pub mod payload;
pub mod verify;
pub mod wire;

pub use deliver::{Answer, Delivery, Receiver};
pub use payload::{Business, Customer, Factory, Inbound, Status, StatusError};
