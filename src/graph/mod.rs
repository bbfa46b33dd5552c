//! Meta's Graph API: the client ([`client`]), what can go wrong talking to it ([`error`]), the
//! per-number throughput limit ([`pacer`]), and paging through lists with Meta's `after` cursor
//! ([`with_cursor`], [`next_cursor`]; never by following the absolute `paging.next` URL, which
//! would leave GRAPH_API_BASE).

pub mod client;
pub mod error;
pub mod pacer;

pub use client::GraphClient;
pub use error::GraphError;

/// `path` (which already has a query) asking for the page after `after`, when there is one.
pub(crate) fn with_cursor(mut path: String, after: Option<&str>) -> String {
    if let Some(cursor) = after {
        path.push_str("&after=");
        path.extend(form_urlencoded::byte_serialize(cursor.as_bytes()));
    }
    path
}

/// The cursor of the page after `page`: `paging.cursors.after`, only while Meta says there is a
/// next page (`paging.next`).
pub(crate) fn next_cursor(page: &serde_json::Value) -> Option<String> {
    page.pointer("/paging/cursors/after")
        .and_then(serde_json::Value::as_str)
        .filter(|_| page.pointer("/paging/next").is_some())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cursor_is_appended_encoded() {
        assert_eq!(
            with_cursor("/w/list?limit=5".into(), None),
            "/w/list?limit=5"
        );
        assert_eq!(
            with_cursor("/w/list?limit=5".into(), Some("QV&F=x/y+z")),
            "/w/list?limit=5&after=QV%26F%3Dx%2Fy%2Bz"
        );
    }

    #[test]
    fn the_next_cursor_is_there_only_while_there_is_a_next_page() {
        let page = json!({"data": [], "paging": {"cursors": {"before": "B", "after": "A"},
            "next": "https://graph.facebook.com/v22.0/w/list?after=A"}});
        assert_eq!(next_cursor(&page).as_deref(), Some("A"));
        let last = json!({"data": [], "paging": {"cursors": {"before": "B", "after": "A"}}});
        assert_eq!(next_cursor(&last), None);
        assert_eq!(next_cursor(&json!({"data": []})), None);
    }
}
