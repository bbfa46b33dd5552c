//! Meta's Graph API: the client ([`client`]) and what can go wrong talking to it ([`error`]).

pub mod client;
pub mod error;

pub use client::GraphClient;
pub use error::GraphError;
