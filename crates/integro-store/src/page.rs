//! Cursor pagination. A cursor is the opaque form of the last id a page held;
//! ids are UUID v7, so they follow creation order and pages never skip or repeat
//! rows when new ones arrive.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::Serialize;
use uuid::Uuid;

use crate::StoreError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Uuid>,
}

impl PageRequest {
    /// Checks `limit` (1..=200, default 50) and decodes `cursor`.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest, StoreError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(StoreError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                StoreError::invalid("cursor", "is not a cursor returned by this API")
            })?),
        };
        Ok(PageRequest { limit, after })
    }

    pub fn first(limit: u32) -> PageRequest {
        PageRequest { limit, after: None }
    }

    /// The SQL `LIMIT`: one more than asked, to know whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        self.limit as i64 + 1
    }

    pub fn after_text(&self) -> Option<String> {
        self.after.map(|u| u.to_string())
    }
}

/// One page of a list; `next_cursor` is absent on the last page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows.
    pub fn from_rows(mut rows: Vec<T>, req: &PageRequest, id: impl Fn(&T) -> Uuid) -> Page<T> {
        let next_cursor = if rows.len() > req.limit as usize {
            rows.truncate(req.limit as usize);
            rows.last().map(|last| encode_cursor(id(last)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

fn encode_cursor(id: Uuid) -> String {
    B64URL.encode(id.as_bytes())
}

fn decode_cursor(text: &str) -> Option<Uuid> {
    let bytes = B64URL.decode(text).ok()?;
    Uuid::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let id = Uuid::now_v7();
        let req = PageRequest::parse(Some(10), Some(&encode_cursor(id))).unwrap();
        assert_eq!(req.after, Some(id));
        assert!(PageRequest::parse(None, Some("nope")).is_err());
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(201), None).is_err());
    }

    #[test]
    fn next_cursor_only_when_more_rows_exist() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let req = PageRequest::first(2);
        let page = Page::from_rows(ids.clone(), &req, |u| *u);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_cursor, Some(encode_cursor(ids[1])));
        let last = Page::from_rows(ids[..2].to_vec(), &req, |u| *u);
        assert!(last.next_cursor.is_none());
    }
}
