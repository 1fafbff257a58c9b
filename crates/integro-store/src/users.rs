//! Users (people who sign in) and their memberships: one role per tenant.

use integro_core::{Actor, Role, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::credentials::hash_password;
use crate::db::{Tx, from_ms, now_ms};
use crate::page::{Page, PageRequest};
use crate::{Db, StoreError, parse_id};
use integro_db::OnUnique;

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
    /// Set when an operator disabled the account: it cannot sign in, and
    /// its tokens stopped working at that moment.
    #[serde(with = "time::serde::rfc3339::option")]
    pub disabled_at: Option<OffsetDateTime>,
    /// Part of every access token issued to the user; raising it ends them.
    #[serde(skip)]
    pub token_generation: i64,
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
    Option<i64>,
    i64,
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
    Option<i64>,
    i64,
    T,
);
const COLUMNS: &str = "u.id, u.email, u.name, u.is_operator, u.created_at, u.updated_at, \
     u.created_by, u.disabled_at, u.token_generation";

fn from_row(r: Row) -> Result<User, StoreError> {
    Ok(User {
        id: parse_id(&r.0)?,
        email: r.1,
        name: r.2,
        is_operator: r.3 != 0,
        created_at: from_ms(r.4),
        updated_at: from_ms(r.5),
        created_by: r.6,
        disabled_at: r.7.map(from_ms),
        token_generation: r.8,
    })
}

/// Splits a user row from the column that follows it.
fn split_row<T>(r: RowAnd<T>) -> Result<(User, T), StoreError> {
    Ok((
        from_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8))?,
        r.9,
    ))
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
    if let Some(name) = new.name.filter(|n| !n.trim().is_empty()) {
        crate::fields::check_name("name", name)?;
    }
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
        disabled_at: None,
        token_generation: 0,
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
        let (user, password_hash) = split_row(r)?;
        Ok(UserCredentials {
            user,
            password_hash,
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
            let (user, role) = split_row(r)?;
            Ok(Member {
                user,
                role: parse_role(&role)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page::from_rows(members, page, |m| m.user.id))
}

pub(crate) fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|e: integro_core::UnknownRole| StoreError::Internal(format!("stored {e}")))
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

/// Ends every session of `user_id` at once: refresh tokens are revoked and
/// the token generation rises, so access tokens already issued stop working.
pub async fn end_sessions(tx: &mut Tx<'_>, user_id: Uuid) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "UPDATE users SET token_generation = token_generation + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(user_id.to_string())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sets a user's password (operators, `integro user reset-password`); every
/// session of the user ends.
pub async fn set_password(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    user_id: Uuid,
    password: &str,
) -> Result<(), StoreError> {
    let hash = hash_password(password)?;
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL",
    )
    .bind(hash)
    .bind(now_ms())
    .bind(user_id.to_string())
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    end_sessions(tx, user_id).await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("user.reset_password", "user", user_id),
    )
    .await
}

/// Disables (or enables again) a user. A disabled user cannot sign in, and
/// its sessions end at once.
pub async fn set_disabled(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    user_id: Uuid,
    disabled: bool,
) -> Result<(), StoreError> {
    let now = now_ms();
    let updated = sqlx::query(
        "UPDATE users SET disabled_at = $1, updated_at = $2 WHERE id = $3 AND deleted_at IS NULL",
    )
    .bind(disabled.then_some(now))
    .bind(now)
    .bind(user_id.to_string())
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound("user"));
    }
    if disabled {
        end_sessions(tx, user_id).await?;
    }
    audit::record(
        tx,
        actor,
        request_id,
        Change::new(
            if disabled {
                "user.disable"
            } else {
                "user.enable"
            },
            "user",
            user_id,
        ),
    )
    .await
}

/// What happens to a member: a new role, or removal from the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    Role(Role),
    Remove,
}

/// Changes or removes a membership, under the rules every caller (API,
/// dashboard, CLI) shares: the caller (holding `caller_role` in the tenant)
/// may only manage members whose role is not above their own and only grant
/// roles they hold; the tenant's last owner can be neither demoted nor
/// removed. A removed member's sessions end at once.
pub async fn change_member(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    user_id: Uuid,
    caller_role: Role,
    change: MemberChange,
) -> Result<(), StoreError> {
    // Membership changes of one tenant take turns (a row lock on PostgreSQL,
    // the single writer on SQLite), so that two owners demoting each other at
    // once cannot leave the tenant without one.
    sqlx::query("UPDATE tenants SET updated_at = updated_at WHERE id = $1")
        .bind(tenant_id.to_string())
        .execute(&mut **tx)
        .await?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id.to_string())
            .bind(user_id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    let current = parse_role(&current.ok_or(StoreError::NotFound("member"))?)?;
    if !caller_role.may_manage(current) {
        return Err(StoreError::Forbidden(format!(
            "the {caller_role} role may not change a member who is {current}"
        )));
    }
    if let MemberChange::Role(role) = change
        && !caller_role.may_grant(role)
    {
        return Err(StoreError::Forbidden(format!(
            "the {caller_role} role may not grant the {role} role"
        )));
    }
    let stays_owner = change == MemberChange::Role(Role::Owner);
    if current == Role::Owner && !stays_owner {
        let owners: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner'",
        )
        .bind(tenant_id.to_string())
        .fetch_one(&mut **tx)
        .await?;
        if owners <= 1 {
            return Err(StoreError::Conflict(
                "this is the tenant's last owner: make someone else owner first".into(),
            ));
        }
    }
    match change {
        MemberChange::Role(role) => {
            set_membership(tx, actor, request_id, tenant_id, user_id, role).await
        }
        MemberChange::Remove => {
            sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id.to_string())
                .bind(user_id.to_string())
                .execute(&mut **tx)
                .await?;
            end_sessions(tx, user_id).await?;
            audit::record(
                tx,
                actor,
                request_id,
                Change::new("membership.delete", "user", user_id)
                    .tenant(tenant_id)
                    .before(&serde_json::json!({ "role": current })),
            )
            .await
        }
    }
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
