//! The sandbox's customers: who they are, what they write when the sandbox starts, and how they
//! answer what the business sends them (a question gets a yes, reply buttons get the first
//! button tapped, a list gets its first row picked, anything else a thank-you that quotes it).

use std::time::Duration;

use serde_json::Value;

use crate::simulate::payload::{Customer, Inbound};

/// The cast: two customers by phone number, one known only by a business-scoped user id
/// (Meta withholds the number of users who chose a username).
pub fn cast() -> Vec<Customer> {
    let mut ana = Customer::with_phone("5511988887777");
    ana.name = "Ana Souza".into();
    let mut kerry = Customer::with_phone("919216598210");
    kerry.name = "Kerry Fisher".into();
    let mut luis = Customer::bsuid_only("US.13491208655302741918");
    luis.name = "Luis Romero".into();
    luis.username = Some("@luis.r".into());
    vec![ana, kerry, luis]
}

/// The cast member with `customer`'s id, else `customer` itself.
pub fn known(customer: &Customer) -> Customer {
    cast()
        .into_iter()
        .find(|c| c.key() == customer.key())
        .unwrap_or_else(|| customer.clone())
}

/// What the cast writes after the sandbox starts: (delay from start, who, what).
pub fn opening() -> Vec<(Duration, Customer, Inbound)> {
    let cast = cast();
    let (ana, kerry, luis) = (cast[0].clone(), cast[1].clone(), cast[2].clone());
    vec![
        (
            Duration::from_millis(500),
            ana.clone(),
            Inbound::Text {
                body: "Olá! Do you ship to Brazil?".into(),
                reply_to: None,
            },
        ),
        (
            Duration::from_millis(1500),
            kerry.clone(),
            Inbound::Image {
                caption: Some("Is this the right part for my bike?".into()),
            },
        ),
        (
            Duration::from_millis(2500),
            luis,
            Inbound::Referral {
                body: "Hi! I saw your ad, is the blue one still available?".into(),
            },
        ),
        (
            Duration::from_millis(3500),
            kerry,
            Inbound::Location {
                latitude: 51.5033,
                longitude: -0.1196,
                name: Some("Kerry's workshop".into()),
                address: Some("Westminster Bridge Rd, London".into()),
            },
        ),
    ]
}

/// The customer's answer to `message` (a send the gateway made, Meta's body) whose id is `id`;
/// `None` for what nobody answers (a reaction).
pub fn answer_to(message: &Value, id: &str) -> Option<Inbound> {
    let kind = message["type"].as_str().unwrap_or_default();
    let quote = |body: &str| Inbound::Text {
        body: body.into(),
        reply_to: Some(id.to_owned()),
    };
    Some(match kind {
        "reaction" => return None,
        "text" => {
            let body = message["text"]["body"].as_str().unwrap_or_default();
            if body.contains('?') {
                quote("Yes, that works for me 👍")
            } else {
                quote("Thanks! 🙏")
            }
        }
        "interactive" => {
            let i = &message["interactive"];
            match i["type"].as_str() {
                Some("button") => {
                    let reply = &i["action"]["buttons"][0]["reply"];
                    Inbound::ButtonReply {
                        id: reply["id"].as_str().unwrap_or("1").into(),
                        title: reply["title"].as_str().unwrap_or("OK").into(),
                    }
                }
                Some("list") => {
                    let row = &i["action"]["sections"][0]["rows"][0];
                    Inbound::ListReply {
                        id: row["id"].as_str().unwrap_or("1").into(),
                        title: row["title"].as_str().unwrap_or("The first").into(),
                        description: row["description"].as_str().map(str::to_owned),
                    }
                }
                _ => quote("Done, thanks!"),
            }
        }
        "template" => quote("Thanks for letting me know!"),
        "location_request" => Inbound::Location {
            latitude: 40.4168,
            longitude: -3.7038,
            name: Some("Home".into()),
            address: Some("Puerta del Sol, Madrid".into()),
        },
        _ => quote("Got it, thank you!"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn customers_answer_in_kind() {
        let question = json!({"type": "text", "text": {"body": "Ready tomorrow?"}});
        assert_eq!(
            answer_to(&question, "wamid.X"),
            Some(Inbound::Text {
                body: "Yes, that works for me 👍".into(),
                reply_to: Some("wamid.X".into())
            })
        );
        let buttons = json!({"type": "interactive", "interactive": {"type": "button",
            "body": {"text": "Confirm?"}, "action": {"buttons": [
                {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}});
        assert_eq!(
            answer_to(&buttons, "wamid.X"),
            Some(Inbound::ButtonReply {
                id: "yes".into(),
                title: "Yes".into()
            })
        );
        let list = json!({"type": "interactive", "interactive": {"type": "list",
            "body": {"text": "Pick a slot"}, "action": {"button": "Slots", "sections": [
                {"title": "Today", "rows": [{"id": "am", "title": "Morning", "description": "9-12"},
                                            {"id": "pm", "title": "Afternoon"}]}]}}});
        assert_eq!(
            answer_to(&list, "wamid.X"),
            Some(Inbound::ListReply {
                id: "am".into(),
                title: "Morning".into(),
                description: Some("9-12".into())
            })
        );
        let location =
            json!({"type": "location_request", "location_request": {"body": {"text": "Where?"}}});
        assert!(matches!(
            answer_to(&location, "wamid.X"),
            Some(Inbound::Location { .. })
        ));
        let reaction =
            json!({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}});
        assert_eq!(answer_to(&reaction, "wamid.Y"), None);
        assert_eq!(
            known(&Customer::with_phone("919216598210")).name,
            "Kerry Fisher"
        );
    }
}
