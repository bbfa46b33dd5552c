//! Everything Meta sends to `/webhook`: the subscription handshake ([`handshake`]), the
//! `X-Hub-Signature-256` check over raw bytes ([`signature`]), the permissive wire DTOs
//! ([`payload`]) and their conversion into domain types ([`extract`], with message contents typed
//! by [`content`]).

pub mod content;
pub mod extract;
pub mod handshake;
mod lenient;
pub mod payload;
pub mod signature;

pub use extract::{
    ExtractError, InboundStatus, Notice, Quarantined, WebhookBatch, extract_batch, sent_message,
};
pub use handshake::{HandshakeError, HandshakeQuery};
pub use signature::{AppSecret, BodyDigest, BodyHasher, SignatureError};
