//! Public mode of a web channel account: a website's chat widget starts
//! visitor sessions with a publishable key (`ipk_…`), from the origins
//! listed. The key is not secret in a browser, but only its hash is kept and
//! it is shown once, when made: it names the account, and rotating it ends
//! the sessions started with the old one.

use integro_core::Actor;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::credentials::{random_token, token_hash};
use crate::db::{Tx, from_ms, now_ms};
use crate::{Db, StoreError, parse_id};

/// Every publishable key starts with this.
pub const KEY_PREFIX: &str = "ipk_";
/// Origins one account may list.
pub const MAX_ORIGINS: usize = 20;
/// The longest origin accepted (a scheme, a DNS name and a port).
const MAX_ORIGIN_LEN: usize = 300;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebPublic {
    pub account_id: Uuid,
    #[serde(skip)]
    pub tenant_id: Uuid,
    /// Whether visitors may start sessions and chat.
    pub enabled: bool,
    /// The origins (`https://shop.example.com`) whose pages may chat.
    pub allowed_origins: Vec<String>,
    /// The first characters of the publishable key, to recognise it.
    pub key_prefix: String,
    /// SHA-256 of the publishable key.
    #[serde(skip)]
    pub key_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub updated_by: Option<String>,
}

impl WebPublic {
    /// Whether `origin`, as a browser sent it, is one of the allowed ones.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Whether `key` is this account's current publishable key.
    pub fn key_matches(&self, key: &str) -> bool {
        key.starts_with(KEY_PREFIX) && token_hash(key) == self.key_hash
    }
}

type Row = (
    String,
    String,
    i64,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
);
const COLUMNS: &str = "account_id, tenant_id, enabled, key_hash, key_prefix, allowed_origins, created_at, updated_at, updated_by";

fn from_row(r: Row) -> Result<WebPublic, StoreError> {
    Ok(WebPublic {
        account_id: parse_id(&r.0)?,
        tenant_id: parse_id(&r.1)?,
        enabled: r.2 != 0,
        key_hash: r.3,
        key_prefix: r.4,
        allowed_origins: serde_json::from_str(&r.5).unwrap_or_default(),
        created_at: from_ms(r.6),
        updated_at: from_ms(r.7),
        updated_by: r.8,
    })
}

/// An origin as browsers send it in `Origin`: `scheme://host[:port]`, in
/// lower case, without the scheme's default port; or why it is not one.
pub fn normalize_origin(given: &str) -> Result<String, String> {
    let given = given.trim();
    let lower = given.to_ascii_lowercase();
    // A trailing slash is how origins are often copied from an address bar.
    let lower = lower.strip_suffix('/').unwrap_or(&lower);
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or("must be scheme://host[:port], like https://shop.example.com")?;
    if scheme != "https" && scheme != "http" {
        return Err("the scheme must be https or http".into());
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\', '*']) {
        return Err("must be only scheme://host[:port]: no path, query, user or wildcard".into());
    }
    let (host, port) = match rest.strip_prefix('[') {
        // An IPv6 literal.
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("an unclosed IPv6 address")?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("not an IPv6 address".into());
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or("unexpected text after the host")?,
                ),
            };
            (format!("[{addr}]"), port)
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let valid = !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err("the host must be a DNS name (in punycode) or an IP address".into());
            }
            (host.to_string(), port)
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or("the port must be a number from 1 to 65535")?;
            let default = if scheme == "https" { 443 } else { 80 };
            (n != default).then_some(n)
        }
    };
    let origin = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    if origin.len() > MAX_ORIGIN_LEN {
        return Err(format!("must be at most {MAX_ORIGIN_LEN} characters"));
    }
    Ok(origin)
}

/// The list normalised, without repeats; refused naming the entry at fault.
fn normalize_origins(given: &[String], enabled: bool) -> Result<Vec<String>, StoreError> {
    if given.len() > MAX_ORIGINS {
        return Err(StoreError::invalid(
            "allowed_origins",
            format!("at most {MAX_ORIGINS} origins"),
        ));
    }
    let mut origins: Vec<String> = Vec::with_capacity(given.len());
    for (i, o) in given.iter().enumerate() {
        let origin = normalize_origin(o)
            .map_err(|m| StoreError::invalid(&format!("allowed_origins[{i}]"), m))?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    if enabled && origins.is_empty() {
        return Err(StoreError::invalid(
            "allowed_origins",
            "name at least one origin to turn public mode on",
        ));
    }
    Ok(origins)
}

fn new_key() -> (String, String, String) {
    let key = format!("{KEY_PREFIX}{}", random_token(32));
    let prefix: String = key.chars().take(KEY_PREFIX.len() + 6).collect();
    let hash = token_hash(&key);
    (key, prefix, hash)
}

/// The settings of one account, to fetch where needed.
fn by_account(
    tenant_id: Uuid,
    account_id: Uuid,
) -> sqlx::query::QueryAs<'static, sqlx::Any, Row, sqlx::any::AnyArguments> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM web_public WHERE tenant_id = $1 AND account_id = $2"
    )))
    .bind(tenant_id.to_string())
    .bind(account_id.to_string())
}

/// The account's public mode settings, if they were ever set.
pub async fn get(
    db: &Db,
    tenant_id: Uuid,
    account_id: Uuid,
) -> Result<Option<WebPublic>, StoreError> {
    let row = by_account(tenant_id, account_id)
        .fetch_optional(db.pool())
        .await?;
    row.map(from_row).transpose()
}

async fn get_in(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    account_id: Uuid,
) -> Result<Option<WebPublic>, StoreError> {
    let row = by_account(tenant_id, account_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(from_row).transpose()
}

/// Sets an account's public mode (the caller checked that it is a web
/// account of `tenant_id`). The first time, a publishable key is made and
/// answered; it is never available again.
pub async fn configure(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    account_id: Uuid,
    enabled: bool,
    allowed_origins: &[String],
) -> Result<(WebPublic, Option<String>), StoreError> {
    let origins = normalize_origins(allowed_origins, enabled)?;
    let origins_json = serde_json::to_string(&origins).expect("serialisable");
    let now = now_ms();
    let (key, prefix, hash) = new_key();
    let inserted = sqlx::query(
        "INSERT INTO web_public (account_id, tenant_id, enabled, key_hash, key_prefix, allowed_origins, created_at, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account_id.to_string())
    .bind(tenant_id.to_string())
    .bind(enabled as i64)
    .bind(&hash)
    .bind(&prefix)
    .bind(&origins_json)
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    let before = if inserted {
        None
    } else {
        let before = get_in(tx, tenant_id, account_id)
            .await?
            .ok_or(StoreError::NotFound("web public settings"))?;
        sqlx::query(
            "UPDATE web_public SET enabled = $1, allowed_origins = $2, updated_at = $3, updated_by = $4 \
             WHERE tenant_id = $5 AND account_id = $6",
        )
        .bind(enabled as i64)
        .bind(&origins_json)
        .bind(now)
        .bind(actor.label.clone())
        .bind(tenant_id.to_string())
        .bind(account_id.to_string())
        .execute(&mut **tx)
        .await?;
        Some(before)
    };
    let after = get_in(tx, tenant_id, account_id)
        .await?
        .ok_or(StoreError::NotFound("web public settings"))?;
    let mut change = Change::new("account.web_public", "account", account_id)
        .tenant(tenant_id)
        .after(&after);
    if let Some(before) = &before {
        change = change.before(before);
    }
    audit::record(tx, actor, request_id, change).await?;
    Ok((after, inserted.then_some(key)))
}

/// A new publishable key for the account; the old one stops working, with
/// the visitor sessions started with it.
pub async fn rotate_key(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    account_id: Uuid,
) -> Result<(WebPublic, String), StoreError> {
    let before = get_in(tx, tenant_id, account_id)
        .await?
        .ok_or(StoreError::NotFound("web public settings"))?;
    let (key, prefix, hash) = new_key();
    sqlx::query(
        "UPDATE web_public SET key_hash = $1, key_prefix = $2, updated_at = $3, updated_by = $4 \
         WHERE tenant_id = $5 AND account_id = $6",
    )
    .bind(&hash)
    .bind(&prefix)
    .bind(now_ms())
    .bind(actor.label.clone())
    .bind(tenant_id.to_string())
    .bind(account_id.to_string())
    .execute(&mut **tx)
    .await?;
    let after = get_in(tx, tenant_id, account_id)
        .await?
        .ok_or(StoreError::NotFound("web public settings"))?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("account.web_public.rotate_key", "account", account_id)
            .tenant(tenant_id)
            .before(&before)
            .after(&after),
    )
    .await?;
    Ok((after, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_as_browsers_send_them() {
        let ok = |s: &str| normalize_origin(s).unwrap();
        assert_eq!(ok("https://Shop.Example.com"), "https://shop.example.com");
        assert_eq!(ok("https://shop.example.com/"), "https://shop.example.com");
        assert_eq!(
            ok("https://shop.example.com:443"),
            "https://shop.example.com"
        );
        assert_eq!(ok("http://localhost:3000"), "http://localhost:3000");
        assert_eq!(ok("http://127.0.0.1:80"), "http://127.0.0.1");
        assert_eq!(ok("https://[::1]:8443"), "https://[::1]:8443");
        for bad in [
            "shop.example.com",
            "ftp://shop.example.com",
            "https://shop.example.com/chat",
            "https://shop.example.com?x=1",
            "https://*.example.com",
            "https://user@shop.example.com",
            "https://shop.example.com:0",
            "https://shop.example.com:99999",
            "https://shop.example.com:+80",
            "https://",
            "https://exa mple.com",
            "null",
            "*",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn public_mode_needs_an_origin() {
        assert!(normalize_origins(&[], true).is_err());
        assert_eq!(normalize_origins(&[], false).unwrap(), Vec::<String>::new());
        let two = [
            "https://a.example".to_string(),
            "https://A.example/".to_string(),
        ];
        assert_eq!(
            normalize_origins(&two, true).unwrap(),
            ["https://a.example"]
        );
        let e = normalize_origins(&["https://a.example".into(), "nope".into()], true).unwrap_err();
        assert!(matches!(e, StoreError::Invalid { field, .. } if field == "allowed_origins[1]"));
    }
}
