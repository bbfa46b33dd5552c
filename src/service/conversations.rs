//! Conversations: which business number a request is about, the parsing of contacts, cursors
//! and limits, and the store calls behind `GET /v1/messages/{id}`, `GET /v1/conversations`,
//! `GET /v1/conversations/{contact}/messages` and `POST /v1/conversations/{contact}/read`.

use crate::domain::{ContactId, MessageId, PhoneNumberId};
use crate::store::view::{
    ConversationsQuery, DEFAULT_PAGE, MAX_PAGE, MessageCursor, MessagesQuery, Page,
};
use crate::store::{Store, StoreError};

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// A parameter breaks a rule: where it is, its name and the rule.
    #[error("{field} {rule}")]
    Invalid {
        place: Place,
        field: &'static str,
        rule: String,
    },
    /// Nothing stored under that id or contact.
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a request parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A segment of the URL path (`{id}`, `{contact}`).
    Path,
    /// The query string.
    Query,
}

impl Place {
    /// The name error bodies use (`"loc": ["query", "limit"]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Query => "query",
        }
    }
}

/// A query parameter that breaks `rule`.
fn invalid(field: &'static str, rule: impl std::fmt::Display) -> ConversationError {
    ConversationError::Invalid {
        place: Place::Query,
        field,
        rule: rule.to_string(),
    }
}

/// A path segment that breaks `rule`.
fn invalid_path(field: &'static str, rule: impl std::fmt::Display) -> ConversationError {
    ConversationError::Invalid {
        place: Place::Path,
        field,
        rule: rule.to_string(),
    }
}

/// The conversation service: the store and the default business number.
#[derive(Debug, Clone)]
pub struct Conversations {
    store: Store,
    default_number: Option<PhoneNumberId>,
}

/// The parameters of a page request, as the client sent them.
#[derive(Debug, Default, Clone)]
pub struct PageParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl Conversations {
    /// `default_number` is PHONE_NUMBER_ID, used when a request names no business number.
    pub fn new(store: Store, default_number: Option<PhoneNumberId>) -> Self {
        Self {
            store,
            default_number,
        }
    }

    /// The business number a request is about: `phone_number_id` when given, else
    /// PHONE_NUMBER_ID.
    pub fn business_number(
        &self,
        phone_number_id: Option<&str>,
    ) -> Result<PhoneNumberId, ConversationError> {
        match phone_number_id {
            Some(id) => PhoneNumberId::parse(id).map_err(|e| invalid("phone_number_id", e)),
            None => self.default_number.clone().ok_or_else(|| {
                invalid(
                    "phone_number_id",
                    "is required: PHONE_NUMBER_ID is not configured, so name the business number \
                     (each conversation in GET /v1/conversations shows its phone_number_id)",
                )
            }),
        }
    }

    /// One message by id, with its status and status history.
    pub async fn message(
        &self,
        id: &str,
        phone_number_id: Option<&str>,
    ) -> Result<String, ConversationError> {
        let id = MessageId::parse(id).map_err(|e| invalid_path("id", e))?;
        let tenant = phone_number_id
            .map(PhoneNumberId::parse)
            .transpose()
            .map_err(|e| invalid("phone_number_id", e))?;
        self.store
            .message(id.as_str(), tenant.as_ref().map(PhoneNumberId::as_str))
            .await?
            .ok_or_else(|| {
                ConversationError::NotFound(format!("no message with id {:?}", id.as_str()))
            })
    }

    /// A page of conversations.
    pub async fn list(
        &self,
        phone_number_id: Option<&str>,
        unread_only: bool,
        q: Option<&str>,
        page: PageParams,
    ) -> Result<Page, ConversationError> {
        let phone_number_id = phone_number_id
            .map(PhoneNumberId::parse)
            .transpose()
            .map_err(|e| invalid("phone_number_id", e))?;
        let q = q.map(str::trim).filter(|q| !q.is_empty()).map(|q| {
            // A number in any accepted form searches by its digits.
            match ContactId::parse(q) {
                Ok(ContactId::Phone(p)) => p.as_str().to_owned(),
                _ => q.to_lowercase(),
            }
        });
        Ok(self
            .store
            .conversations(&ConversationsQuery {
                phone_number_id: phone_number_id.map(|p| p.as_str().to_owned()),
                unread_only,
                q,
                limit: limit(page.limit)?,
                cursor: page.cursor.map(conversation_cursor).transpose()?,
            })
            .await?)
    }

    /// A page of one conversation's messages. `before` and `after` are cursors (at most one).
    #[allow(clippy::too_many_arguments)]
    pub async fn messages(
        &self,
        contact: &str,
        phone_number_id: Option<&str>,
        before: Option<String>,
        after: Option<String>,
        limit_param: Option<i64>,
        kind: Option<String>,
    ) -> Result<Page, ConversationError> {
        let (tenant, contact) = self.conversation(contact, phone_number_id).await?;
        let cursor = match (before, after) {
            (Some(_), Some(_)) => return Err(invalid("before", "and after cannot both be given")),
            (Some(c), None) => MessageCursor::Before(cursor(c, "before")?),
            (None, Some(c)) => MessageCursor::After(cursor(c, "after")?),
            (None, None) => MessageCursor::Latest,
        };
        Ok(self
            .store
            .conversation_messages(&MessagesQuery {
                phone_number_id: tenant.as_str().to_owned(),
                contact: contact.as_str().to_owned(),
                cursor,
                limit: limit(limit_param)?,
                kind: kind.filter(|k| !k.is_empty()),
            })
            .await?)
    }

    /// Sets a conversation's unread count to 0: the conversation's key, its JSON and the
    /// contact's latest message.
    pub async fn mark_read(
        &self,
        contact: &str,
        phone_number_id: Option<&str>,
    ) -> Result<(ContactId, crate::store::view::MarkedRead), ConversationError> {
        let (tenant, contact) = self.conversation(contact, phone_number_id).await?;
        let marked = self
            .store
            .mark_read(tenant.as_str(), contact.as_str())
            .await?
            .ok_or_else(|| not_found(&contact, &tenant))?;
        Ok((contact, marked))
    }

    /// The business number and the conversation key a `/v1/conversations/{contact}` request is
    /// about: the contact parsed (422 naming it), the number, and the key the contact's alias
    /// names ([`crate::store::alias`]: a user's phone finds their BSUID-keyed conversation too).
    async fn conversation(
        &self,
        contact: &str,
        phone_number_id: Option<&str>,
    ) -> Result<(PhoneNumberId, ContactId), ConversationError> {
        let contact = ContactId::parse(contact).map_err(|e| invalid_path("contact", e))?;
        let tenant = self.business_number(phone_number_id)?;
        let key = self
            .store
            .conversation_key(tenant.as_str(), &contact)
            .await?;
        Ok((tenant, key))
    }
}

impl Conversations {
    /// Deletes a conversation; how many messages it held.
    pub async fn delete(
        &self,
        contact: &str,
        phone_number_id: Option<&str>,
    ) -> Result<u64, ConversationError> {
        let (tenant, contact) = self.conversation(contact, phone_number_id).await?;
        self.store
            .delete_conversation(tenant.as_str(), contact.as_str())
            .await?
            .ok_or_else(|| not_found(&contact, &tenant))
    }
}

fn not_found(contact: &ContactId, tenant: &PhoneNumberId) -> ConversationError {
    ConversationError::NotFound(format!(
        "no conversation with {} on business number {tenant}",
        contact.masked()
    ))
}

fn limit(limit: Option<i64>) -> Result<usize, ConversationError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => Ok(n as usize),
        Some(_) => Err(invalid("limit", format!("must be 1-{MAX_PAGE}"))),
    }
}

/// A conversation cursor as a page gave it: `<last activity> <phone_number_id>:<contact>` (both
/// backends issue this shape). Anything else is a 422 rather than silently the first page.
fn conversation_cursor(c: String) -> Result<String, ConversationError> {
    let valid = c.split_once(' ').is_some_and(|(at, member)| {
        at.parse::<i64>().is_ok()
            && member.split_once(':').is_some_and(|(pnid, contact)| {
                PhoneNumberId::parse(pnid).is_ok() && ContactId::parse(contact).is_ok()
            })
    });
    if valid {
        Ok(c)
    } else {
        Err(invalid(
            "cursor",
            "must be a next_cursor from an earlier page of this endpoint",
        ))
    }
}

/// A message cursor as a page gave it: `<10-digit timestamp>:<message id>`.
fn cursor(c: String, field: &'static str) -> Result<String, ConversationError> {
    let valid = c.len() > 11
        && c.as_bytes()[..10].iter().all(u8::is_ascii_digit)
        && c.as_bytes()[10] == b':'
        && MessageId::parse(&c[11..]).is_ok();
    if valid {
        Ok(c)
    } else {
        Err(invalid(
            field,
            "must be a next_cursor from an earlier page of this endpoint",
        ))
    }
}
