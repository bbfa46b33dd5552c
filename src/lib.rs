//! whatsapp-gateway: a WhatsApp Cloud API gateway.
//!
//! Meta calls [`http::webhook`] with inbound messages; they are verified ([`webhook::signature`]),
//! parsed into domain types ([`webhook::extract`]), deduplicated and stored ([`store`]). Client apps
//! send messages through [`graph`] and read conversations back through [`service`]. [`startup`] wires it
//! all into one axum server; `main.rs` only loads configuration and runs it.

pub mod config;
pub mod doctor;
pub mod domain;
pub mod events;
pub mod graph;
pub mod http;
pub mod metrics;
pub mod outgoing;
pub mod rules;
pub mod sandbox;
pub mod service;
pub mod simulate;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhook;
