//! Users (people who sign in) and their memberships: one role per tenant.

use integro_core::{Actor, Role, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::credentials::hash_password;
use crate::db::{Tx, from_ms, now_ms};
use crate::error::OnUnique;
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, parse_id};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    /// Platform operators manage tenants and can act inside any tenant.
    pub is_operator: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: Option<String>,
}

/// A user together with the password hash, for signing in only.
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Membership {
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub role: Role,
}

/// A user as seen from inside one tenant.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    #[serde(flatten)]
    pub user: User,
    pub role: Role,
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub password: &'a str,
    pub is_operator: bool,
}

type Row = (
    String,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
);
/// A user row followed by one more column.
type RowAnd<T> = (
    String,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
    T,
);
const COLUMNS: &str =
    "u.id, u.email, u.name, u.is_operator, u.created_at, u.updated_at, u.created_by";

fn from_row(r: Row) -> Result<User, StoreError> {
    Ok(User {
        id: parse_id(&r.0)?,
        email: r.1,
        name: r.2,
        is_operator: r.3 != 0,
        created_at: from_ms(r.4),
        updated_at: from_ms(r.5),
        created_by: r.6,
    })
}

/// Lower-cased and trimmed; rejects what cannot be an address.
pub fn normalize_email(email: &str) -> Result<String, StoreError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(StoreError::invalid("email", "is not an email address"))
    }
}

pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    new: NewUser<'_>,
) -> Result<User, StoreError> {
    let email = normalize_email(new.email)?;
    let hash = hash_password(new.password)?;
    let id = new_id();
    let now = now_ms();
    let name = new
        .name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from);
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, is_operator, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(id.to_string())
    .bind(&email)
    .bind(name.clone())
    .bind(hash)
    .bind(new.is_operator as i64)
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await
    .on_unique("a user with this email already exists")?;
    let user = User {
        id,
        email,
        name,
        is_operator: new.is_operator,
        created_at: from_ms(now),
        updated_at: from_ms(now),
        created_by: Some(actor.label.clone()),
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("user.create", "user", id).after(&user),
    )
    .await?;
    Ok(user)
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<User>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL"
    )))
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<User>, StoreError> {
    Ok(find_credentials(db, email).await?.map(|c| c.user))
}

pub async fn find_credentials(db: &Db, email: &str) -> Result<Option<UserCredentials>, StoreError> {
    let Ok(email) = normalize_email(email) else {
        return Ok(None);
    };
    let row: Option<RowAnd<String>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, u.password_hash FROM users u WHERE u.email = $1 AND u.deleted_at IS NULL"
    )))
    .bind(email)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(UserCredentials {
            user: from_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6))?,
            password_hash: r.7,
        })
    })
    .transpose()
}

pub async fn operator_exists(db: &Db) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE is_operator = 1 AND deleted_at IS NULL",
    )
    .fetch_one(db.pool())
    .await?;
    Ok(n > 0)
}

/// Every user (operators and the CLI).
pub async fn list_all(db: &Db, page: &PageRequest) -> Result<Page<User>, StoreError> {
    let after = page.after_text().unwrap_or_default();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users u WHERE u.deleted_at IS NULL AND u.id > $1 ORDER BY u.id LIMIT $2"
    )))
    .bind(after)
    .bind(page.fetch_limit())
    .fetch_all(db.pool())
    .await?;
    let users = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(users, page, |u| u.id))
}

/// The members of one tenant with their roles.
pub async fn list_members(
    db: &Db,
    tenant_id: Uuid,
    page: &PageRequest,
) -> Result<Page<Member>, StoreError> {
    let after = page.after_text().unwrap_or_default();
    let rows: Vec<RowAnd<String>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, m.role FROM users u JOIN memberships m ON m.user_id = u.id \
             WHERE m.tenant_id = $1 AND u.deleted_at IS NULL AND u.id > $2 ORDER BY u.id LIMIT $3"
    )))
    .bind(tenant_id.to_string())
    .bind(after)
    .bind(page.fetch_limit())
    .fetch_all(db.pool())
    .await?;
    let members = rows
        .into_iter()
        .map(|r| {
            Ok(Member {
                user: from_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6))?,
                role: parse_role(&r.7)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page::from_rows(members, page, |m| m.user.id))
}

fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|e: integro_core::UnknownRole| StoreError::Conflict(format!("stored {e}")))
}

/// Gives `user` the `role` in `tenant` (or changes the role it had).
pub async fn set_membership(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<(), StoreError> {
    let previous: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id.to_string())
            .bind(user_id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO memberships (tenant_id, user_id, role, created_at, updated_at, created_by) \
         VALUES ($1, $2, $3, $4, $4, $5) \
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at",
    )
    .bind(tenant_id.to_string())
    .bind(user_id.to_string())
    .bind(role.as_str())
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    let change = Change::new(
        if previous.is_some() {
            "membership.update"
        } else {
            "membership.create"
        },
        "user",
        user_id,
    )
    .tenant(tenant_id)
    .after(&serde_json::json!({ "role": role }));
    let change = match previous {
        Some(old) => change.before(&serde_json::json!({ "role": old })),
        None => change,
    };
    audit::record(tx, actor, request_id, change).await
}

/// The role `user` holds in `tenant`, if any (the tenant must be live).
pub async fn role_in(db: &Db, tenant_id: Uuid, user_id: Uuid) -> Result<Option<Role>, StoreError> {
    let role: Option<String> = sqlx::query_scalar(
        "SELECT m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2 AND t.deleted_at IS NULL",
    )
    .bind(tenant_id.to_string())
    .bind(user_id.to_string())
    .fetch_optional(db.pool())
    .await?;
    role.as_deref().map(parse_role).transpose()
}

pub async fn memberships(db: &Db, user_id: Uuid) -> Result<Vec<Membership>, StoreError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT t.id, t.name, m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.user_id = $1 AND t.deleted_at IS NULL ORDER BY t.id",
    )
    .bind(user_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(id, name, role)| {
            Ok(Membership {
                tenant_id: parse_id(&id)?,
                tenant_name: name,
                role: parse_role(&role)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("  Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        assert!(normalize_email("ann").is_err());
        assert!(normalize_email("@x").is_err());
        assert!(normalize_email("a@b@c").is_err());
        assert!(normalize_email("a b@c").is_err());
    }
}
