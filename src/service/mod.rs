//! The flows between the HTTP surfaces and the store, shared by the REST API, the event stream
//! and (later) the inbox, so each of them is a thin adapter:
//! - [`conversations`]: reading messages and conversations, marking them read; parses what
//!   clients send (contacts, cursors, limits) into store queries, naming the field and rule of
//!   whatever does not parse;
//! - [`upgrade`]: after start-up, gives messages stored by earlier releases (FastAPI form only)
//!   their records and conversations, once.

pub mod conversations;
pub mod upgrade;
