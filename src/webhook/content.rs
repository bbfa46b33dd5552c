//! Wire -> domain for what a message says: [`read_details`] turns the [`MessagePayload`] that
//! extraction has already parsed into a [`Content`] and the message-level context, referral,
//! errors and group id. It never fails: a type we do not know, or a known type whose object is
//! missing or unusable, becomes [`Content::Unknown`] holding Meta's object.
//!
//! The message is parsed once, by extraction. Only the rare fallbacks ([`Content::Unknown`],
//! [`Interactive::Other`]) read Meta's object again from the raw bytes, since the typed payload
//! does not keep fields it has no name for.

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::{
    ContactAddress, ContactCard, ContactEmail, ContactName, ContactOrg, ContactPhone, ContactUrl,
    Content, IdentityChange, Interactive, Location, Media, MessageContext, MetaError, Order,
    ProductItem, Referral, ReferredProduct, SystemEvent,
};
use crate::webhook::payload::{
    ContextPayload, EditPayload, IdentityPayload, InteractivePayload, LocationPayload,
    MediaPayload, MessagePayload, OrderPayload, ReferralPayload, SharedContactPayload,
    SystemPayload,
};

/// Everything typed about a message besides its id, sender, timestamp and `body`.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageDetails {
    /// What the message says.
    pub content: Content,
    /// Reply, forward and product-inquiry information.
    pub context: Option<MessageContext>,
    /// The ad or post the conversation started from.
    pub referral: Option<Referral>,
    /// The message's own `errors` (unsupported types, failed media).
    pub errors: Vec<MetaError>,
    /// The group the message was sent in.
    pub group_id: Option<String>,
}

/// Reads the typed details of one message. `raw` is the same message's bytes, read again only
/// for the fallbacks that keep Meta's object as JSON.
pub fn read_details(message: &MessagePayload<'_>, raw: &RawValue) -> MessageDetails {
    MessageDetails {
        content: content_of(
            message,
            &Source {
                raw,
                at: Vec::new(),
            },
        ),
        context: message.context.as_ref().map(context_of),
        referral: message.referral.as_ref().map(referral_of),
        errors: errors_of(message),
        group_id: owned(&message.group_id),
    }
}

/// Where a message object sits in the raw bytes: the top-level message, or one nested in `edit`.
struct Source<'r> {
    raw: &'r RawValue,
    at: Vec<&'static str>,
}

impl Source<'_> {
    /// `message[key]` as JSON, `null` if absent (or if the bytes no longer parse, which cannot
    /// happen for bytes the extractor parsed).
    fn object(&self, key: &str) -> Value {
        let Ok(mut value) = serde_json::from_str::<Value>(self.raw.get()) else {
            return Value::Null;
        };
        for k in self.at.iter().copied().chain([key]) {
            value = match value {
                Value::Object(mut map) => map.remove(k).unwrap_or(Value::Null),
                _ => return Value::Null,
            };
        }
        value
    }

    fn nested(&self, path: [&'static str; 2]) -> Self {
        let mut at = self.at.clone();
        at.extend(path);
        Source { raw: self.raw, at }
    }
}

fn content_of(m: &MessagePayload<'_>, source: &Source<'_>) -> Content {
    let kind = m.kind.as_deref().unwrap_or("");
    let media = |p: &Option<MediaPayload>, variant: fn(Media) -> Content| {
        p.as_ref().map(|p| variant(media_of(p)))
    };
    let content = match kind {
        "text" => m.text.as_ref().map(|t| Content::Text {
            body: t.body.clone().into_owned(),
        }),
        "image" => media(&m.image, Content::Image),
        "video" => media(&m.video, Content::Video),
        "audio" => media(&m.audio, Content::Audio),
        "document" => media(&m.document, Content::Document),
        "sticker" => media(&m.sticker, Content::Sticker),
        "location" => m.location.as_ref().and_then(location_of),
        "contacts" => m.contacts.as_ref().map(|cards| Content::Contacts {
            contacts: cards.iter().map(card_of).collect(),
            origin: owned(&m.origin),
        }),
        "interactive" => m.interactive.as_ref().map(|i| Content::Interactive {
            interactive: interactive_of(i, source),
        }),
        "button" => m.button.as_ref().map(|b| Content::Button {
            text: b.text.clone(),
            payload: b.payload.clone(),
        }),
        "reaction" => m.reaction.as_ref().and_then(|r| {
            Some(Content::Reaction {
                message_id: r.message_id.clone().filter(|id| !id.is_empty())?,
                // Meta marks a removed reaction with `""` or no `emoji` at all.
                emoji: r.emoji.clone().filter(|e| !e.is_empty()),
            })
        }),
        "order" => m.order.as_ref().map(order_of),
        "system" => m.system.as_ref().map(|s| Content::System {
            system: system_of(s, m.identity.as_ref()),
        }),
        "request_welcome" => Some(Content::RequestWelcome),
        "edit" => m.edit.as_ref().and_then(|e| edit_of(e, source)),
        "revoke" => m.revoke.as_ref().and_then(|r| {
            Some(Content::Revoke {
                original_message_id: non_empty(&r.original_message_id)?,
            })
        }),
        // `unknown` is the older name of `unsupported`; its subtype object may be absent.
        "unsupported" | "unknown" => Some(Content::Unsupported {
            subtype: m.unsupported.as_ref().and_then(|u| owned(&u.kind)),
            errors: errors_of(m),
        }),
        _ => None,
    };
    content.unwrap_or_else(|| Content::Unknown {
        kind: kind.to_owned(),
        raw: source.object(kind),
    })
}

fn media_of(p: &MediaPayload) -> Media {
    Media {
        id: p.id.clone(),
        mime_type: p.mime_type.clone(),
        sha256: p.sha256.clone(),
        caption: p.caption.clone(),
        filename: p.filename.clone(),
        url: p.url.clone(),
        voice: p.voice,
        animated: p.animated,
    }
}

/// A pin needs both coordinates; without them the object is kept raw.
fn location_of(l: &LocationPayload) -> Option<Content> {
    Some(Content::Location(Location {
        latitude: l.latitude?,
        longitude: l.longitude?,
        name: l.name.clone(),
        address: l.address.clone(),
        url: l.url.clone(),
    }))
}

fn card_of(c: &SharedContactPayload) -> ContactCard {
    ContactCard {
        name: c.name.as_ref().map(|n| ContactName {
            formatted_name: n.formatted_name.clone(),
            first_name: n.first_name.clone(),
            last_name: n.last_name.clone(),
            middle_name: n.middle_name.clone(),
            suffix: n.suffix.clone(),
            prefix: n.prefix.clone(),
        }),
        phones: c
            .phones
            .iter()
            .map(|p| ContactPhone {
                phone: p.phone.clone(),
                wa_id: p.wa_id.clone(),
                kind: p.kind.clone(),
            })
            .collect(),
        emails: c
            .emails
            .iter()
            .map(|e| ContactEmail {
                email: e.email.clone(),
                kind: e.kind.clone(),
            })
            .collect(),
        addresses: c
            .addresses
            .iter()
            .map(|a| ContactAddress {
                street: a.street.clone(),
                city: a.city.clone(),
                state: a.state.clone(),
                zip: a.zip.clone(),
                country: a.country.clone(),
                country_code: a.country_code.clone(),
                kind: a.kind.clone(),
            })
            .collect(),
        org: c.org.as_ref().map(|o| ContactOrg {
            company: o.company.clone(),
            department: o.department.clone(),
            title: o.title.clone(),
        }),
        urls: c
            .urls
            .iter()
            .map(|u| ContactUrl {
                url: u.url.clone(),
                kind: u.kind.clone(),
            })
            .collect(),
        birthday: c.birthday.clone(),
        vcard: c.vcard.clone(),
    }
}

fn interactive_of(i: &InteractivePayload, source: &Source<'_>) -> Interactive {
    // `interactive.type` names the answer; when it is missing, the one object present does.
    let subtype = i.kind.as_deref().unwrap_or(if i.button_reply.is_some() {
        "button_reply"
    } else if i.list_reply.is_some() {
        "list_reply"
    } else if i.nfm_reply.is_some() {
        "nfm_reply"
    } else if i.call_permission_reply.is_some() {
        "call_permission_reply"
    } else {
        ""
    });
    let typed = match subtype {
        "button_reply" => i.button_reply.as_ref().map(|r| Interactive::ButtonReply {
            id: r.id.clone(),
            title: r.title.clone(),
        }),
        "list_reply" => i.list_reply.as_ref().map(|r| Interactive::ListReply {
            id: r.id.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
        }),
        "nfm_reply" => i.nfm_reply.as_ref().map(|f| Interactive::NfmReply {
            name: f.name.clone(),
            body: f.body.clone(),
            response_json: f.response_json.clone(),
            // A second parse, of a string Meta nests as text: the message itself is not reread.
            response: f
                .response_json
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
        }),
        "call_permission_reply" => {
            i.call_permission_reply
                .as_ref()
                .map(|c| Interactive::CallPermissionReply {
                    response: c.response.clone(),
                    expiration_timestamp: c.expiration_timestamp,
                    response_source: c.response_source.clone(),
                })
        }
        _ => None,
    };
    typed.unwrap_or_else(|| Interactive::Other {
        subtype: subtype.to_owned(),
        raw: source.object("interactive"),
    })
}

fn order_of(o: &OrderPayload) -> Content {
    Content::Order(Order {
        catalog_id: o.catalog_id.clone(),
        text: o.text.clone(),
        product_items: o
            .product_items
            .iter()
            .map(|p| ProductItem {
                product_retailer_id: p.product_retailer_id.clone(),
                quantity: p.quantity,
                item_price: p.item_price,
                currency: p.currency.clone(),
            })
            .collect(),
    })
}

fn system_of(s: &SystemPayload, identity: Option<&IdentityPayload<'_>>) -> SystemEvent {
    SystemEvent {
        kind: s.kind.clone(),
        body: s.body.clone(),
        wa_id: s.wa_id.clone().or_else(|| s.new_wa_id.clone()),
        user_id: s.user_id.clone(),
        parent_user_id: s.parent_user_id.clone(),
        previous_user_id: s.previous_user_id.clone(),
        identity: identity.map(|i| IdentityChange {
            acknowledged: i.acknowledged,
            created_timestamp: i.created_timestamp,
            hash: owned(&i.hash),
        }),
    }
}

/// An edit needs the id of the message it edits and the new message.
fn edit_of(e: &EditPayload<'_>, source: &Source<'_>) -> Option<Content> {
    let original_message_id = non_empty(&e.original_message_id)?;
    let message = e.message.as_deref()?;
    Some(Content::Edit {
        original_message_id,
        message: Box::new(content_of(message, &source.nested(["edit", "message"]))),
        context: message.context.as_ref().map(context_of),
    })
}

fn context_of(c: &ContextPayload<'_>) -> MessageContext {
    MessageContext {
        id: owned(&c.id),
        from: owned(&c.from),
        forwarded: c.forwarded,
        frequently_forwarded: c.frequently_forwarded,
        referred_product: c.referred_product.as_ref().map(|p| ReferredProduct {
            catalog_id: owned(&p.catalog_id),
            product_retailer_id: owned(&p.product_retailer_id),
        }),
    }
}

fn referral_of(r: &ReferralPayload<'_>) -> Referral {
    Referral {
        source_url: owned(&r.source_url),
        source_id: owned(&r.source_id),
        source_type: owned(&r.source_type),
        headline: owned(&r.headline),
        body: owned(&r.body),
        media_type: owned(&r.media_type),
        image_url: owned(&r.image_url),
        video_url: owned(&r.video_url),
        thumbnail_url: owned(&r.thumbnail_url),
        ctwa_clid: owned(&r.ctwa_clid),
    }
}

/// The message's `errors`; entries with no field we know (not objects, `{}`) are dropped.
fn errors_of(m: &MessagePayload<'_>) -> Vec<MetaError> {
    m.errors
        .iter()
        .flatten()
        .map(|e| MetaError {
            code: e.code,
            title: e.title.clone(),
            message: e.message.clone(),
            details: e
                .error_data
                .as_ref()
                .and_then(|d| d.details.clone())
                .or_else(|| e.details.clone()),
            href: e.href.clone(),
        })
        .filter(|e| *e != MetaError::default())
        .collect()
}

fn owned(s: &Option<Cow<'_, str>>) -> Option<String> {
    s.as_deref().map(str::to_owned)
}

fn non_empty(s: &Option<Cow<'_, str>>) -> Option<String> {
    s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned)
}
