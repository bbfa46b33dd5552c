//! Integration tests: the real router over HTTP, a real redis-server and the embedded store, a
//! wiremock Graph API. One binary, one module per feature.

mod helpers;

mod account;
mod auth;
mod container;
mod conversations;
mod docs;
mod doctor;
mod echo_bounds;
mod edge;
mod events;
mod get;
mod get_stream;
mod health;
mod identities;
mod inbox;
mod instances;
mod limits;
mod media;
mod metrics;
mod outgoing;
mod process;
mod readiness;
mod rules;
mod sandbox;
mod send;
mod send_v1;
mod simulate;
mod store_faults;
mod store_integrity;
mod webhook;
mod webhook_verify;
