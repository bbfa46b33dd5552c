//! The flows between the HTTP surfaces and the store, shared by the REST API, the event stream
//! and (later) the inbox, so each of them is a thin adapter:
//! - [`account`]: the business numbers and approved templates as Meta describes them;
//! - [`delivery`]: when Meta last reached the webhook, and whether it has gone quiet;
//! - [`conversations`]: reading messages and conversations, marking them read; parses what
//!   clients send (contacts, cursors, limits) into store queries, naming the field and rule of
//!   whatever does not parse;
//! - [`send`]: sending a message (business number, 24-hour window, the Graph call) and recording
//!   what Meta accepted with its `message_outgoing` event;
//! - [`webhooks`]: managing outgoing webhook subscriptions (create, change, rotate, replay);
//! - [`rules`]: managing auto-reply rules (create, change, delete);
//! - [`upgrade`]: after start-up, gives messages stored by earlier releases (FastAPI form only)
//!   their records and conversations, once.

pub mod account;
pub mod conversations;
pub mod delivery;
pub mod rules;
pub mod send;
pub mod upgrade;
pub mod webhooks;
