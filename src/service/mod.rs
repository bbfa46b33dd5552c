//! The flows between the HTTP surfaces and the store, shared by the REST API, the event stream
//! and (later) the inbox, so each of them is a thin adapter:
//! - [`conversations`]: reading messages and conversations, marking them read; parses what
//!   clients send (contacts, cursors, limits) into store queries, naming the field and rule of
//!   whatever does not parse.

pub mod conversations;
