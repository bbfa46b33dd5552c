//! Domain types: values that can only exist in a valid, normalized form.
//!
//! Parsing happens once at the edge (HTTP handlers, the webhook extractor, configuration); everything
//! inward takes these types, never raw `String`s.

pub mod inbound;
pub mod message_id;
pub mod outbound;
pub mod phone_number;

pub use inbound::{InboundMessage, MessageKind};
pub use message_id::MessageId;
pub use outbound::{MessageText, OutboundText};
pub use phone_number::PhoneNumber;
