//! Domain types: values that can only exist in a valid, normalized form.
//!
//! Parsing happens once at the edge (HTTP handlers, the webhook extractor, configuration); everything
//! inward takes these types, never raw `String`s.

pub mod content;
pub mod identity;
pub mod inbound;
pub mod media;
pub mod message_id;
pub mod meta_error;
pub mod outbound;
pub mod phone_number;
pub mod send;
pub mod status;

pub use content::{
    ContactAddress, ContactCard, ContactEmail, ContactName, ContactOrg, ContactPhone, ContactUrl,
    Content, IdentityChange, Interactive, Location, Media, MessageContext, Order, ProductItem,
    Referral, ReferredProduct, SystemEvent,
};
pub use identity::{Bsuid, ContactId, PhoneNumberId};
pub use inbound::{ContactProfile, InboundMessage, MessageKind, Origin};
pub use message_id::MessageId;
pub use meta_error::MetaError;
pub use outbound::{MessageText, OutboundText};
pub use phone_number::PhoneNumber;
pub use send::{Invalid, OutgoingMessage, SendKind};
pub use status::{
    Applied, CallStatus, Conversation, DeliveryStatus, ParsedStatus, Pricing, PricingCategory,
    PricingModel, PricingType, Recipient, StatusParseError, StatusState, StatusTransition,
    StatusUpdate, advances,
};
