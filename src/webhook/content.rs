//! Wire -> domain for what a message says: [`take_details`] turns the [`MessagePayload`] that
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

/// Reads the typed details of one message, moving its content fields (text, media, context,
/// referral, errors, group id, …) out of `message` rather than copying them, so call it after
/// anything else that reads those fields. Identity fields (`id`, `from`, `from_user_id`, …),
/// `timestamp` and `type` are left in place. `raw` is the same message's bytes, read again only
/// for the fallbacks that keep Meta's object as JSON.
pub fn take_details(message: &mut MessagePayload<'_>, raw: &RawValue) -> MessageDetails {
    let errors = take_errors(message);
    MessageDetails {
        content: content_of(
            message,
            &errors,
            &Source {
                raw,
                at: Vec::new(),
            },
        ),
        context: message.context.take().map(|c| context_of(*c)),
        referral: message.referral.take().map(|r| referral_of(*r)),
        errors,
        group_id: owned(message.group_id.take()),
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

/// The content named by `type`, moved out of `m`; `errors` are the message's own (already taken).
fn content_of(m: &mut MessagePayload<'_>, errors: &[MetaError], source: &Source<'_>) -> Content {
    let kind = m.kind.as_deref().unwrap_or("");
    let media = |p: Option<Box<MediaPayload>>, variant: fn(Media) -> Content| {
        p.map(|p| variant(media_of(*p)))
    };
    let content = match kind {
        "text" => m.text.take().map(|t| Content::Text {
            body: t.body.into_owned(),
        }),
        "image" => media(m.image.take(), Content::Image),
        "video" => media(m.video.take(), Content::Video),
        "audio" => media(m.audio.take(), Content::Audio),
        "document" => media(m.document.take(), Content::Document),
        "sticker" => media(m.sticker.take(), Content::Sticker),
        "location" => m.location.take().and_then(|l| location_of(*l)),
        "contacts" => m.contacts.take().map(|cards| Content::Contacts {
            contacts: cards.into_iter().map(card_of).collect(),
            origin: owned(m.origin.take()),
        }),
        "interactive" => m.interactive.take().map(|i| Content::Interactive {
            interactive: interactive_of(*i, source),
        }),
        "button" => m.button.take().map(|b| Content::Button {
            text: b.text,
            payload: b.payload,
        }),
        "reaction" => m.reaction.take().and_then(|r| {
            Some(Content::Reaction {
                message_id: r.message_id.filter(|id| !id.is_empty())?,
                // Meta marks a removed reaction with `""` or no `emoji` at all.
                emoji: r.emoji.filter(|e| !e.is_empty()),
            })
        }),
        "order" => m.order.take().map(|o| order_of(*o)),
        "system" => m.system.take().map(|s| Content::System {
            system: system_of(*s, m.identity.take().map(|i| *i)),
        }),
        "request_welcome" => Some(Content::RequestWelcome),
        "edit" => m.edit.take().and_then(|e| edit_of(*e, source)),
        "revoke" => m.revoke.take().and_then(|r| {
            Some(Content::Revoke {
                original_message_id: non_empty(r.original_message_id)?,
            })
        }),
        // `unknown` is the older name of `unsupported`; its subtype object may be absent.
        "unsupported" | "unknown" => Some(Content::Unsupported {
            subtype: m.unsupported.take().and_then(|u| owned(u.kind)),
            errors: errors.to_vec(),
        }),
        _ => None,
    };
    content.unwrap_or_else(|| Content::Unknown {
        kind: kind.to_owned(),
        raw: source.object(kind),
    })
}

fn media_of(p: MediaPayload) -> Media {
    Media {
        id: p.id,
        mime_type: p.mime_type,
        sha256: p.sha256,
        caption: p.caption,
        filename: p.filename,
        url: p.url,
        voice: p.voice,
        animated: p.animated,
    }
}

/// A pin needs both coordinates; without them the object is kept raw.
fn location_of(l: LocationPayload) -> Option<Content> {
    Some(Content::Location(Location {
        latitude: l.latitude?,
        longitude: l.longitude?,
        name: l.name,
        address: l.address,
        url: l.url,
    }))
}

fn card_of(c: SharedContactPayload) -> ContactCard {
    ContactCard {
        name: c.name.map(|n| ContactName {
            formatted_name: n.formatted_name,
            first_name: n.first_name,
            last_name: n.last_name,
            middle_name: n.middle_name,
            suffix: n.suffix,
            prefix: n.prefix,
        }),
        phones: c
            .phones
            .into_iter()
            .map(|p| ContactPhone {
                phone: p.phone,
                wa_id: p.wa_id,
                kind: p.kind,
            })
            .collect(),
        emails: c
            .emails
            .into_iter()
            .map(|e| ContactEmail {
                email: e.email,
                kind: e.kind,
            })
            .collect(),
        addresses: c
            .addresses
            .into_iter()
            .map(|a| ContactAddress {
                street: a.street,
                city: a.city,
                state: a.state,
                zip: a.zip,
                country: a.country,
                country_code: a.country_code,
                kind: a.kind,
            })
            .collect(),
        org: c.org.map(|o| ContactOrg {
            company: o.company,
            department: o.department,
            title: o.title,
        }),
        urls: c
            .urls
            .into_iter()
            .map(|u| ContactUrl {
                url: u.url,
                kind: u.kind,
            })
            .collect(),
        birthday: c.birthday,
        vcard: c.vcard,
    }
}

fn interactive_of(i: InteractivePayload<'_>, source: &Source<'_>) -> Interactive {
    // `interactive.type` names the answer; when it is missing, the one object present does.
    let inferred = if i.button_reply.is_some() {
        "button_reply"
    } else if i.list_reply.is_some() {
        "list_reply"
    } else if i.nfm_reply.is_some() {
        "nfm_reply"
    } else if i.call_permission_reply.is_some() {
        "call_permission_reply"
    } else {
        ""
    };
    let subtype = i.kind.unwrap_or(Cow::Borrowed(inferred));
    let typed = match &*subtype {
        "button_reply" => i.button_reply.map(|r| Interactive::ButtonReply {
            id: r.id,
            title: r.title,
        }),
        "list_reply" => i.list_reply.map(|r| Interactive::ListReply {
            id: r.id,
            title: r.title,
            description: r.description,
        }),
        "nfm_reply" => i.nfm_reply.map(|f| Interactive::NfmReply {
            // A second parse, of a string Meta nests as text: the message itself is not reread.
            response: f
                .response_json
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            name: f.name,
            body: f.body,
            response_json: f.response_json,
        }),
        "call_permission_reply" => {
            i.call_permission_reply
                .map(|c| Interactive::CallPermissionReply {
                    response: c.response,
                    expiration_timestamp: c.expiration_timestamp,
                    response_source: c.response_source,
                })
        }
        _ => None,
    };
    typed.unwrap_or_else(|| Interactive::Other {
        raw: source.object("interactive"),
        subtype: subtype.into_owned(),
    })
}

fn order_of(o: OrderPayload) -> Content {
    Content::Order(Order {
        catalog_id: o.catalog_id,
        text: o.text,
        product_items: o
            .product_items
            .into_iter()
            .map(|p| ProductItem {
                product_retailer_id: p.product_retailer_id,
                quantity: p.quantity,
                item_price: p.item_price,
                currency: p.currency,
            })
            .collect(),
    })
}

fn system_of(s: SystemPayload, identity: Option<IdentityPayload<'_>>) -> SystemEvent {
    SystemEvent {
        kind: s.kind,
        body: s.body,
        wa_id: s.wa_id.or(s.new_wa_id),
        user_id: s.user_id,
        parent_user_id: s.parent_user_id,
        previous_user_id: s.previous_user_id,
        identity: identity.map(|i| IdentityChange {
            acknowledged: i.acknowledged,
            created_timestamp: i.created_timestamp,
            hash: owned(i.hash),
        }),
    }
}

/// An edit needs the id of the message it edits and the new message.
fn edit_of(e: EditPayload<'_>, source: &Source<'_>) -> Option<Content> {
    let original_message_id = non_empty(e.original_message_id)?;
    let mut message = e.message?;
    let errors = take_errors(&mut message);
    let content = content_of(&mut message, &errors, &source.nested(["edit", "message"]));
    Some(Content::Edit {
        original_message_id,
        message: Box::new(content),
        context: message.context.take().map(|c| context_of(*c)),
    })
}

fn context_of(c: ContextPayload<'_>) -> MessageContext {
    MessageContext {
        id: owned(c.id),
        from: owned(c.from),
        forwarded: c.forwarded,
        frequently_forwarded: c.frequently_forwarded,
        referred_product: c.referred_product.map(|p| ReferredProduct {
            catalog_id: owned(p.catalog_id),
            product_retailer_id: owned(p.product_retailer_id),
        }),
    }
}

fn referral_of(r: ReferralPayload<'_>) -> Referral {
    Referral {
        source_url: owned(r.source_url),
        source_id: owned(r.source_id),
        source_type: owned(r.source_type),
        headline: owned(r.headline),
        body: owned(r.body),
        media_type: owned(r.media_type),
        image_url: owned(r.image_url),
        video_url: owned(r.video_url),
        thumbnail_url: owned(r.thumbnail_url),
        ctwa_clid: owned(r.ctwa_clid),
    }
}

/// The message's `errors`, moved out; entries with no field we know (not objects, `{}`) are
/// dropped.
fn take_errors(m: &mut MessagePayload<'_>) -> Vec<MetaError> {
    m.errors
        .take()
        .into_iter()
        .flatten()
        .map(|e| MetaError {
            code: e.code,
            title: e.title,
            message: e.message,
            details: e.error_data.and_then(|d| d.details).or(e.details),
            href: e.href,
            hint: None,
        })
        .filter(|e| *e != MetaError::default())
        .collect()
}

fn owned(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned)
}

fn non_empty(s: Option<Cow<'_, str>>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::InboundMessage;
    use crate::webhook::extract_batch;

    /// A fixture's text, by file stem.
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/inbound/",
                $name,
                ".json"
            ))
        };
    }

    const BSUID: &str = "US.13491208655302741918";
    const BUSINESS_WAMID: &str = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA";

    /// The one message of a fixture, through the real extractor.
    fn extracted(fixture: &str) -> InboundMessage {
        let batch = extract_batch(fixture.as_bytes()).expect("fixture extracts");
        assert_eq!(batch.messages.len(), 1);
        batch.messages.into_iter().next().unwrap()
    }

    fn content(fixture: &str) -> Content {
        extracted(fixture).content
    }

    /// A message object (not a whole notification) read the way extraction reads it.
    fn details_of(message: &str) -> MessageDetails {
        let mut payload: MessagePayload<'_> = serde_json::from_str(message).unwrap();
        take_details(
            &mut payload,
            &RawValue::from_string(message.to_owned()).unwrap(),
        )
    }

    fn lookaside(mid: &str) -> Option<String> {
        Some(format!(
            "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={mid}&ext=1781291000&hash=ATu1Xq8mJ0b2fVw3kA7sPZr4"
        ))
    }

    fn reply_context() -> Option<MessageContext> {
        Some(MessageContext {
            id: Some(BUSINESS_WAMID.into()),
            from: Some("15550783881".into()),
            ..MessageContext::default()
        })
    }

    #[test]
    fn text_is_its_body_with_no_context_referral_errors_or_group() {
        let m = extracted(fixture!("text"));
        assert_eq!(
            m.content,
            Content::Text {
                body: "Does it come in blue?".into()
            }
        );
        assert_eq!(m.body, "Does it come in blue?");
        assert_eq!(
            (m.context, m.referral, m.errors, m.group_id),
            (None, None, vec![], None)
        );
    }

    #[test]
    fn image_keeps_id_mime_type_sha256_caption_and_url() {
        assert_eq!(
            content(fixture!("image")),
            Content::Image(Media {
                id: Some("1479537139650973".into()),
                mime_type: Some("image/jpeg".into()),
                sha256: Some("6S0Ab0xWkaVyNKq0UXKMeVMlAPVVbQN+5l3bE3EgWhE=".into()),
                caption: Some("Is this the right part?".into()),
                url: lookaside("1479537139650973"),
                ..Media::default()
            })
        );
    }

    #[test]
    fn video_keeps_its_caption() {
        assert_eq!(
            content(fixture!("video")),
            Content::Video(Media {
                id: Some("1030562785712396".into()),
                mime_type: Some("video/mp4".into()),
                sha256: Some("Bq3gCXjJ2xJH0m9Tn8n0H1vk0QdQqK3O5rI+4kmzF5w=".into()),
                caption: Some("The noise it makes".into()),
                url: lookaside("1030562785712396"),
                ..Media::default()
            })
        );
    }

    #[test]
    fn voice_note_is_audio_marked_voice() {
        assert_eq!(
            content(fixture!("audio_voice")),
            Content::Audio(Media {
                id: Some("1127406582372093".into()),
                mime_type: Some("audio/ogg; codecs=opus".into()),
                sha256: Some("9Qy2n2m6FJ0nN3b5kH7Yw8YJxkS2jXQ5m7S0cVZL6kI=".into()),
                url: lookaside("1127406582372093"),
                voice: true,
                ..Media::default()
            })
        );
    }

    #[test]
    fn document_keeps_filename_and_caption() {
        assert_eq!(
            content(fixture!("document")),
            Content::Document(Media {
                id: Some("889164290453871".into()),
                mime_type: Some("application/pdf".into()),
                sha256: Some("m1v7Ymh3X7w4Yj3pF0e0c8b2nH5kq2ZJb6lPp4R2s9E=".into()),
                caption: Some("April invoice".into()),
                filename: Some("invoice-2026-04.pdf".into()),
                url: lookaside("889164290453871"),
                ..Media::default()
            })
        );
    }

    #[test]
    fn animated_sticker_is_marked_animated() {
        assert_eq!(
            content(fixture!("sticker_animated")),
            Content::Sticker(Media {
                id: Some("2361093007593212".into()),
                mime_type: Some("image/webp".into()),
                sha256: Some("pF3x0Zs7c2Hh4m8Q6vT1yYk9uN0bW5eR2aL7jD3gK1o=".into()),
                url: lookaside("2361093007593212"),
                animated: true,
                ..Media::default()
            })
        );
    }

    #[test]
    fn location_keeps_coordinates_name_address_and_url() {
        assert_eq!(
            content(fixture!("location")),
            Content::Location(Location {
                latitude: 37.4248593,
                longitude: -122.1232459,
                name: Some("Philz Coffee".into()),
                address: Some("3101 Middlefield Rd, Palo Alto, CA 94306".into()),
                url: Some("https://philzcoffee.com".into()),
            })
        );
    }

    #[test]
    fn contacts_keep_every_part_of_the_card() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            content(fixture!("contacts")),
            Content::Contacts {
                contacts: vec![ContactCard {
                    name: Some(ContactName {
                        formatted_name: some("Pablo Morales"),
                        first_name: some("Pablo"),
                        last_name: some("Morales"),
                        middle_name: some("J."),
                        suffix: some("Jr."),
                        prefix: some("Dr."),
                    }),
                    phones: vec![
                        ContactPhone {
                            phone: some("+1 (650) 555-1299"),
                            wa_id: some("16505551299"),
                            kind: some("CELL"),
                        },
                        ContactPhone {
                            phone: some("+1 650-555-0100"),
                            wa_id: None,
                            kind: some("WORK"),
                        },
                    ],
                    emails: vec![ContactEmail {
                        email: some("pablo.morales@example.com"),
                        kind: some("WORK"),
                    }],
                    addresses: vec![ContactAddress {
                        street: some("1 Hacker Way"),
                        city: some("Menlo Park"),
                        state: some("CA"),
                        zip: some("94025"),
                        country: some("United States"),
                        country_code: some("us"),
                        kind: some("WORK"),
                    }],
                    org: Some(ContactOrg {
                        company: some("Lucky Shrub"),
                        department: some("Sales"),
                        title: some("Account Manager"),
                    }),
                    urls: vec![ContactUrl {
                        url: some("https://www.luckyshrub.com"),
                        kind: some("WORK"),
                    }],
                    birthday: some("1990-07-14"),
                    vcard: None,
                }],
                origin: None,
            }
        );
    }

    #[test]
    fn own_card_shared_on_request_keeps_origin_and_vcard() {
        let Content::Contacts { contacts, origin } = content(fixture!("contacts_own_card")) else {
            panic!("not contacts");
        };
        assert_eq!(origin.as_deref(), Some("contact_request"));
        assert_eq!(contacts.len(), 1);
        assert_eq!(
            contacts[0].vcard.as_deref(),
            Some(
                "BEGIN:VCARD\nVERSION:3.0\nN:Nelson;Sheena;;;\nFN:Sheena Nelson\nTEL;type=CELL;waid=16505551234:+1 650-555-1234\nEND:VCARD"
            )
        );
        assert_eq!(contacts[0].phones[0].wa_id.as_deref(), Some("16505551234"));
    }

    #[test]
    fn button_reply_keeps_id_title_and_the_replied_message() {
        let m = extracted(fixture!("interactive_button_reply"));
        assert_eq!(
            m.content,
            Content::Interactive {
                interactive: Interactive::ButtonReply {
                    id: "reschedule_yes".into(),
                    title: "Yes, reschedule".into(),
                }
            }
        );
        assert_eq!(m.context, reply_context());
    }

    #[test]
    fn list_reply_keeps_id_title_and_description() {
        assert_eq!(
            content(fixture!("interactive_list_reply")),
            Content::Interactive {
                interactive: Interactive::ListReply {
                    id: "slot_2026_06_02_1030".into(),
                    title: "Tue 2 Jun, 10:30".into(),
                    description: Some("Palo Alto store, 30 minutes".into()),
                }
            }
        );
    }

    #[test]
    fn flow_reply_keeps_response_json_as_text_and_parsed() {
        let text =
            r#"{"flow_token":"appt-7f3c2a91","service":"repair","date":"2026-06-02","slots":2}"#;
        assert_eq!(
            content(fixture!("interactive_nfm_reply")),
            Content::Interactive {
                interactive: Interactive::NfmReply {
                    name: Some("flow".into()),
                    body: Some("Sent".into()),
                    response_json: Some(text.into()),
                    response: Some(json!({
                        "flow_token": "appt-7f3c2a91", "service": "repair",
                        "date": "2026-06-02", "slots": 2
                    })),
                }
            }
        );
    }

    #[test]
    fn flow_reply_whose_response_json_is_not_json_keeps_only_the_text() {
        let d = details_of(
            r#"{"id":"wamid.F","type":"interactive","interactive":{"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{not json"}}}"#,
        );
        let Content::Interactive {
            interactive:
                Interactive::NfmReply {
                    response_json,
                    response,
                    ..
                },
        } = d.content
        else {
            panic!("not an nfm_reply: {:?}", d.content);
        };
        assert_eq!(response_json.as_deref(), Some("{not json"));
        assert_eq!(response, None);
    }

    #[test]
    fn call_permission_reply_keeps_response_expiry_and_source() {
        assert_eq!(
            content(fixture!("interactive_call_permission_reply")),
            Content::Interactive {
                interactive: Interactive::CallPermissionReply {
                    response: Some("accept".into()),
                    expiration_timestamp: Some(1781894813),
                    response_source: Some("user_action".into()),
                }
            }
        );
    }

    #[test]
    fn future_interactive_subtype_keeps_the_whole_interactive_object() {
        assert_eq!(
            content(fixture!("interactive_future_subtype")),
            Content::Interactive {
                interactive: Interactive::Other {
                    subtype: "catalog_rating_reply".into(),
                    raw: json!({"type": "catalog_rating_reply",
                        "catalog_rating_reply": {"rating": 4, "comment": "Fast delivery"}}),
                }
            }
        );
    }

    #[test]
    fn template_button_keeps_text_payload_and_context() {
        let m = extracted(fixture!("button"));
        assert_eq!(
            m.content,
            Content::Button {
                text: Some("Stop promotions".into()),
                payload: Some("STOP_PROMOTIONS".into()),
            }
        );
        assert_eq!(m.context, reply_context());
    }

    #[test]
    fn reaction_keeps_target_and_unescaped_emoji() {
        assert_eq!(
            content(fixture!("reaction")),
            Content::Reaction {
                message_id: BUSINESS_WAMID.into(),
                emoji: Some("👍".into()),
            }
        );
    }

    #[test]
    fn reaction_without_emoji_is_a_removal() {
        assert_eq!(
            content(fixture!("reaction_removed")),
            Content::Reaction {
                message_id: BUSINESS_WAMID.into(),
                emoji: None,
            }
        );
    }

    #[test]
    fn reaction_with_an_empty_emoji_is_a_removal_too() {
        let d = details_of(
            r#"{"id":"wamid.R","type":"reaction","reaction":{"message_id":"wamid.T","emoji":""}}"#,
        );
        assert_eq!(
            d.content,
            Content::Reaction {
                message_id: "wamid.T".into(),
                emoji: None
            }
        );
    }

    #[test]
    fn order_keeps_catalog_note_and_every_line() {
        assert_eq!(
            content(fixture!("order")),
            Content::Order(Order {
                catalog_id: Some("1537384967016463".into()),
                text: Some("Please gift-wrap the mug".into()),
                product_items: vec![
                    ProductItem {
                        product_retailer_id: Some("mug-blue-350".into()),
                        quantity: Some(2),
                        item_price: Some(12.5),
                        currency: Some("USD".into()),
                    },
                    ProductItem {
                        product_retailer_id: Some("tea-sencha-100g".into()),
                        quantity: Some(1),
                        item_price: Some(8.0),
                        currency: Some("USD".into()),
                    },
                ],
            })
        );
    }

    #[test]
    fn changed_number_names_the_new_phone_and_bsuid() {
        assert_eq!(
            content(fixture!("system_user_changed_number")),
            Content::System {
                system: SystemEvent {
                    kind: Some("user_changed_number".into()),
                    body: Some("User Sheena Nelson changed from 16505551234 to 16505559876".into()),
                    wa_id: Some("16505559876".into()),
                    user_id: Some("US.28734619283746192834".into()),
                    ..SystemEvent::default()
                }
            }
        );
    }

    #[test]
    fn legacy_new_wa_id_is_read_as_wa_id() {
        let Content::System { system } = content(fixture!("system_user_changed_number_legacy"))
        else {
            panic!("not system");
        };
        assert_eq!(system.wa_id.as_deref(), Some("16505559876"));
        assert_eq!(system.kind.as_deref(), Some("user_changed_number"));
    }

    #[test]
    fn changed_user_id_names_new_previous_and_parent_bsuids() {
        assert_eq!(
            content(fixture!("system_user_changed_user_id")),
            Content::System {
                system: SystemEvent {
                    kind: Some("user_changed_user_id".into()),
                    body: Some(
                        "User changed from US.13491208655302741918 to US.50918273645091827364"
                            .into()
                    ),
                    wa_id: Some("16505551234".into()),
                    user_id: Some("US.50918273645091827364".into()),
                    parent_user_id: Some("US.ENT.11815799212886844830".into()),
                    previous_user_id: Some(BSUID.into()),
                    identity: None,
                }
            }
        );
    }

    #[test]
    fn changed_user_id_without_a_phone_is_typed_from_the_message_object() {
        // Meta omits `from` when the phone is withheld; extraction still requires `from` (identity
        // handling is not this module's), so the message object is read directly.
        let notification: Value =
            serde_json::from_str(fixture!("system_user_changed_user_id_no_phone")).unwrap();
        let message = notification["entry"][0]["changes"][0]["value"]["messages"][0].to_string();
        assert_eq!(
            details_of(&message).content,
            Content::System {
                system: SystemEvent {
                    kind: Some("user_changed_user_id".into()),
                    body: Some(
                        "User changed from US.13491208655302741918 to US.50918273645091827364"
                            .into()
                    ),
                    user_id: Some("US.50918273645091827364".into()),
                    previous_user_id: Some(BSUID.into()),
                    ..SystemEvent::default()
                }
            }
        );
    }

    #[test]
    fn identity_change_keeps_the_identity_object() {
        let Content::System { system } = content(fixture!("system_customer_identity_changed"))
        else {
            panic!("not system");
        };
        assert_eq!(system.kind.as_deref(), Some("customer_identity_changed"));
        assert_eq!(
            system.identity,
            Some(IdentityChange {
                acknowledged: Some(true),
                created_timestamp: Some(1781290000),
                hash: Some("Sjvjlx8G6Z0=".into()),
            })
        );
    }

    #[test]
    fn edit_carries_the_original_id_and_the_new_content() {
        assert_eq!(
            content(fixture!("edit")),
            Content::Edit {
                original_message_id:
                    "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTQ1NjdBNTJFMkI0QkE3RDE3RjA=".into(),
                message: Box::new(Content::Text {
                    body: "Does it come in blue, size M?".into()
                }),
                context: None,
            }
        );
    }

    #[test]
    fn edited_caption_keeps_the_media_and_the_edited_message_context() {
        let m = extracted(fixture!("edit_image_caption"));
        assert_eq!(
            m.content,
            Content::Edit {
                original_message_id: "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTRkQ4MTlBNzRDMUU0RjI5RjA="
                    .into(),
                message: Box::new(Content::Image(Media {
                    id: Some("1479537139650973".into()),
                    mime_type: Some("image/jpeg".into()),
                    sha256: Some("6S0Ab0xWkaVyNKq0UXKMeVMlAPVVbQN+5l3bE3EgWhE=".into()),
                    caption: Some("Is this the right part for the X200?".into()),
                    ..Media::default()
                })),
                context: reply_context(),
            }
        );
        assert_eq!(m.context, None, "the edit event itself has no context");
    }

    #[test]
    fn revoke_names_the_deleted_message() {
        assert_eq!(
            content(fixture!("revoke")),
            Content::Revoke {
                original_message_id: "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTRkQ4MTlBNzRDMUU0RjI5RjA="
                    .into(),
            }
        );
    }

    #[test]
    fn unsupported_keeps_its_subtype_and_errors() {
        let error = MetaError {
            code: Some(131051),
            title: Some("Message type unknown".into()),
            message: Some("Message type unknown".into()),
            details: Some("Message type is currently not supported.".into()),
            href: None,
            hint: None,
        };
        let m = extracted(fixture!("unsupported"));
        assert_eq!(
            m.content,
            Content::Unsupported {
                subtype: Some("poll".into()),
                errors: vec![error.clone()],
            }
        );
        assert_eq!(m.errors, vec![error]);
        assert_eq!(m.body, "[unsupported] Message type unknown");
    }

    #[test]
    fn legacy_unknown_type_is_unsupported_with_top_level_details() {
        assert_eq!(
            content(fixture!("unknown_legacy")),
            Content::Unsupported {
                subtype: None,
                errors: vec![MetaError {
                    code: Some(131051),
                    title: Some("Message type unknown".into()),
                    details: Some("Message type is not currently supported".into()),
                    ..MetaError::default()
                }],
            }
        );
    }

    #[test]
    fn request_welcome_has_no_content() {
        let m = extracted(fixture!("request_welcome"));
        assert_eq!(m.content, Content::RequestWelcome);
        assert_eq!(m.body, "[request_welcome]");
    }

    #[test]
    fn ad_referral_is_kept_beside_the_text() {
        let m = extracted(fixture!("referral_text"));
        assert_eq!(
            m.content,
            Content::Text {
                body: "Hi! Is the summer sale still on?".into()
            }
        );
        assert_eq!(
            m.referral,
            Some(Referral {
                source_url: Some("https://fb.me/3cr4Wqqkv".into()),
                source_id: Some("120226305854810726".into()),
                source_type: Some("ad".into()),
                headline: Some("Summer sale: 30% off mugs".into()),
                body: Some("Tap to chat with us on WhatsApp".into()),
                media_type: Some("image".into()),
                image_url: Some(
                    "https://scontent.xx.fbcdn.net/v/t45.1600-4/summer-mugs.jpg".into()
                ),
                video_url: None,
                thumbnail_url: Some(
                    "https://scontent.xx.fbcdn.net/v/t45.1600-4/summer-mugs-thumb.jpg".into()
                ),
                ctwa_clid: Some(
                    "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0"
                        .into()
                ),
            })
        );
    }

    #[test]
    fn post_referral_keeps_its_video() {
        let referral = extracted(fixture!("referral_video")).referral.unwrap();
        assert_eq!(referral.source_type.as_deref(), Some("post"));
        assert_eq!(referral.media_type.as_deref(), Some("video"));
        assert_eq!(
            referral.video_url.as_deref(),
            Some("https://video.xx.fbcdn.net/v/t42.1790-2/new-teas.mp4")
        );
        assert_eq!(referral.image_url, None);
    }

    #[test]
    fn reply_context_names_the_quoted_message() {
        let m = extracted(fixture!("context_reply"));
        assert_eq!(m.context, reply_context());
        assert_eq!(
            m.content,
            Content::Text {
                body: "Thursday works for me".into()
            }
        );
    }

    #[test]
    fn forwarded_message_is_marked_forwarded() {
        assert_eq!(
            extracted(fixture!("forwarded")).context,
            Some(MessageContext {
                forwarded: true,
                ..MessageContext::default()
            })
        );
    }

    #[test]
    fn frequently_forwarded_message_is_marked_so() {
        assert_eq!(
            extracted(fixture!("frequently_forwarded")).context,
            Some(MessageContext {
                frequently_forwarded: true,
                ..MessageContext::default()
            })
        );
    }

    #[test]
    fn product_inquiry_names_the_referred_product() {
        assert_eq!(
            extracted(fixture!("product_inquiry")).context,
            Some(MessageContext {
                referred_product: Some(ReferredProduct {
                    catalog_id: Some("1537384967016463".into()),
                    product_retailer_id: Some("mug-blue-350".into()),
                }),
                ..reply_context().unwrap()
            })
        );
    }

    #[test]
    fn group_message_keeps_its_group_id() {
        assert_eq!(
            extracted(fixture!("group_text")).group_id.as_deref(),
            Some("Y2FwaV9ncm91cDoxNTU1MDc4Mzg4MToxMjAzNjM0MTk4NzY1NDMyMTA=")
        );
    }

    #[test]
    fn future_type_is_unknown_and_keeps_its_object() {
        let m = extracted(fixture!("unknown_future_type"));
        assert_eq!(
            m.content,
            Content::Unknown {
                kind: "poll".into(),
                raw: json!({"question": "Which colour next?",
                    "options": [{"id": 1, "name": "Teal"}, {"id": 2, "name": "Coral"}],
                    "multiple_answers": false}),
            }
        );
        assert_eq!(m.body, "[poll]", "the compatibility body is unchanged");
    }

    #[test]
    fn escaped_unicode_and_slashes_are_decoded_in_content() {
        assert_eq!(
            content(fixture!("unicode_escapes")),
            Content::Text {
                body: "¿Tienen café con leche? 😀 ☕\nPrecio: 50/100 MXN — \"ya\" \\o/".into()
            }
        );
    }

    #[test]
    fn known_type_without_its_object_is_unknown_not_text() {
        for (message, kind) in [
            (r#"{"id":"w","type":"image"}"#, "image"),
            (r#"{"id":"w","type":"text","text":"hi"}"#, "text"),
            (
                r#"{"id":"w","type":"location","location":{"name":"x"}}"#,
                "location",
            ),
            (
                r#"{"id":"w","type":"reaction","reaction":{"emoji":"x"}}"#,
                "reaction",
            ),
            (
                r#"{"id":"w","type":"edit","edit":{"original_message_id":"o"}}"#,
                "edit",
            ),
            (r#"{"id":"w","type":"revoke","revoke":{}}"#, "revoke"),
        ] {
            let raw: Value = serde_json::from_str(message).unwrap();
            assert_eq!(
                details_of(message).content,
                Content::Unknown {
                    kind: kind.into(),
                    raw: raw[kind].clone(),
                },
                "for {message}"
            );
        }
    }

    #[test]
    fn fields_of_the_wrong_type_read_as_absent_and_never_fail_the_batch() {
        let odd = r#"{"from":"16505551234","id":"wamid.ODD","timestamp":"1","type":"image",
            "image":{"id":1479537139650973,"caption":{"x":1},"voice":"yes","animated":[true]},
            "context":[1],"referral":"ad","errors":{"code":1},"group_id":false,
            "edit":7,"unsupported":null,"origin":{"a":"b"}}"#;
        let body = format!(
            r#"{{"entry":[{{"changes":[{{"field":"messages","value":{{"metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"messages":[{odd}]}}}}]}}]}}"#
        );
        let m = extracted(&body);
        assert_eq!(
            m.content,
            Content::Image(Media {
                id: Some("1479537139650973".into()),
                ..Media::default()
            })
        );
        assert_eq!(
            (m.context, m.referral, m.errors, m.group_id),
            (None, None, vec![], None)
        );
        assert_eq!(m.body, "[image]");
    }

    #[test]
    fn odd_list_elements_and_numbers_are_tolerated() {
        let d = details_of(
            r#"{"id":"w","type":"order","order":{"catalog_id":1537384967016463,"product_items":[
                "x",{"product_retailer_id":"a","quantity":"3","item_price":"9.99","currency":7},
                {"quantity":2.0,"item_price":true}]},
                "errors":["x",{},{"code":"131051","title":"t"}]}"#,
        );
        assert_eq!(
            d.content,
            Content::Order(Order {
                catalog_id: Some("1537384967016463".into()),
                text: None,
                product_items: vec![
                    ProductItem::default(),
                    ProductItem {
                        product_retailer_id: Some("a".into()),
                        quantity: Some(3),
                        item_price: Some(9.99),
                        currency: Some("7".into()),
                    },
                    ProductItem {
                        quantity: Some(2),
                        ..ProductItem::default()
                    },
                ],
            })
        );
        assert_eq!(
            d.errors,
            vec![MetaError {
                code: Some(131051),
                title: Some("t".into()),
                ..MetaError::default()
            }]
        );
    }

    #[test]
    fn every_fixture_content_round_trips_through_json() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/inbound");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let notification: Value = serde_json::from_str(&text).unwrap();
            let message =
                notification["entry"][0]["changes"][0]["value"]["messages"][0].to_string();
            let d = details_of(&message);
            let stored = serde_json::to_string(&d.content).unwrap();
            let back: Content = serde_json::from_str(&stored).unwrap();
            assert_eq!(back, d.content, "{}: {stored}", path.display());
            for (part, json) in [
                ("context", serde_json::to_string(&d.context).unwrap()),
                ("referral", serde_json::to_string(&d.referral).unwrap()),
                ("errors", serde_json::to_string(&d.errors).unwrap()),
            ] {
                let again = match part {
                    "context" => serde_json::to_string(
                        &serde_json::from_str::<Option<MessageContext>>(&json).unwrap(),
                    ),
                    "referral" => serde_json::to_string(
                        &serde_json::from_str::<Option<Referral>>(&json).unwrap(),
                    ),
                    _ => serde_json::to_string(
                        &serde_json::from_str::<Vec<MetaError>>(&json).unwrap(),
                    ),
                }
                .unwrap();
                assert_eq!(again, json, "{}: {part}", path.display());
            }
            seen += 1;
        }
        assert!(seen >= 30, "only {seen} fixtures");
    }

    #[test]
    fn stored_form_is_tagged_by_type_with_meta_field_names() {
        let cases = [
            (
                content(fixture!("text")),
                json!({"type": "text", "body": "Does it come in blue?"}),
            ),
            (
                content(fixture!("interactive_button_reply")),
                json!({"type": "interactive", "interactive":
                    {"type": "button_reply", "id": "reschedule_yes", "title": "Yes, reschedule"}}),
            ),
            (
                content(fixture!("reaction_removed")),
                json!({"type": "reaction", "message_id": BUSINESS_WAMID}),
            ),
            (
                content(fixture!("request_welcome")),
                json!({"type": "request_welcome"}),
            ),
            (
                content(fixture!("system_user_changed_number_legacy")),
                json!({"type": "system", "system": {"type": "user_changed_number",
                    "body": "User Sheena Nelson changed from 16505551234 to 16505559876",
                    "wa_id": "16505559876"}}),
            ),
            (
                content(fixture!("sticker_animated")),
                json!({"type": "sticker", "id": "2361093007593212", "mime_type": "image/webp",
                    "sha256": "pF3x0Zs7c2Hh4m8Q6vT1yYk9uN0bW5eR2aL7jD3gK1o=",
                    "url": lookaside("2361093007593212"), "animated": true}),
            ),
        ];
        for (content, expected) in cases {
            assert_eq!(serde_json::to_value(&content).unwrap(), expected);
        }
    }
}
