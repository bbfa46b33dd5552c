//! Meta's Graph API: the client ([`client`]), what can go wrong talking to it ([`error`]), and
//! the per-number throughput limit ([`pacer`]).

pub mod client;
pub mod error;
pub mod pacer;

pub use client::GraphClient;
pub use error::GraphError;
