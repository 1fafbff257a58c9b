//! Invitations: how a person joins a tenant. An admin invites an email with a
//! role and hands over a one-time token; the person accepts it, creating
//! their account with a password of their own or, when the email already has
//! one, signed in as it. No membership exists before that, and nobody sets
//! another person's password.

use integro_core::{Actor, ActorKind, Role, new_id};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::credentials::{random_token, token_hash};
use crate::db::{Tx, from_ms, now_ms};
use crate::page::{Page, PageRequest};
use crate::users::{self, Member, NewUser, User, normalize_email, parse_role};
use crate::{Db, StoreError, parse_id};

/// Every invitation token starts with this.
pub const TOKEN_PREFIX: &str = "iinv_";

/// How long an invitation can be accepted.
pub const DEFAULT_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role: Role,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub accepted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

type Row = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
);
const COLUMNS: &str =
    "id, tenant_id, email, role, expires_at, created_at, created_by, accepted_at, revoked_at";

fn from_row(r: Row) -> Result<Invitation, StoreError> {
    let state = match (r.7, r.8) {
        (Some(_), _) => "accepted",
        (None, Some(_)) => "revoked",
        (None, None) if r.4 <= now_ms() => "expired",
        (None, None) => "pending",
    };
    Ok(Invitation {
        id: parse_id(&r.0)?,
        tenant_id: parse_id(&r.1)?,
        email: r.2,
        role: parse_role(&r.3)?,
        state: state.into(),
        expires_at: from_ms(r.4),
        created_at: from_ms(r.5),
        created_by: r.6,
        accepted_at: r.7.map(from_ms),
        revoked_at: r.8.map(from_ms),
    })
}

/// Invites `email` into `tenant_id` with `role`; returns the invitation and
/// its token (shown once). A pending invitation of the same email to the
/// same tenant is replaced. The answer is the same whether or not the email
/// has an account anywhere.
pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    tenant_id: Uuid,
    email: &str,
    role: Role,
    ttl_secs: i64,
) -> Result<(Invitation, String), StoreError> {
    let email = normalize_email(email)?;
    let already: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND u.email = $2 AND u.deleted_at IS NULL",
    )
    .bind(tenant_id.to_string())
    .bind(&email)
    .fetch_optional(&mut **tx)
    .await?;
    if already.is_some() {
        return Err(StoreError::Conflict(
            "this email is already a member of the tenant; change its role instead".into(),
        ));
    }
    let now = now_ms();
    sqlx::query(
        "UPDATE invitations SET revoked_at = $1 WHERE tenant_id = $2 AND email = $3 \
         AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(tenant_id.to_string())
    .bind(&email)
    .execute(&mut **tx)
    .await?;
    let token = format!("{TOKEN_PREFIX}{}", random_token(32));
    let id = new_id();
    sqlx::query(
        "INSERT INTO invitations (id, tenant_id, email, role, token_hash, expires_at, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .bind(&email)
    .bind(role.as_str())
    .bind(token_hash(&token))
    .bind(now + ttl_secs * 1000)
    .bind(now)
    .bind(actor.label.clone())
    .execute(&mut **tx)
    .await?;
    let invitation = Invitation {
        id,
        tenant_id,
        email,
        role,
        state: "pending".into(),
        expires_at: from_ms(now + ttl_secs * 1000),
        created_at: from_ms(now),
        created_by: Some(actor.label.clone()),
        accepted_at: None,
        revoked_at: None,
    };
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("invitation.create", "invitation", id)
            .tenant(tenant_id)
            .after(&invitation),
    )
    .await?;
    Ok((invitation, token))
}

pub async fn get(db: &Db, tenant_id: Uuid, id: Uuid) -> Result<Option<Invitation>, StoreError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant_id.to_string())
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(from_row).transpose()
}

/// The tenant's invitations, oldest first.
pub async fn list(
    db: &Db,
    tenant_id: Uuid,
    page: &PageRequest,
) -> Result<Page<Invitation>, StoreError> {
    let after = page.after_text().unwrap_or_default();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    )))
    .bind(tenant_id.to_string())
    .bind(after)
    .bind(page.fetch_limit())
    .fetch_all(db.pool())
    .await?;
    let items = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |i| i.id))
}

/// Revokes a pending invitation; one already accepted or revoked is left as
/// it is (the answer says which).
pub async fn revoke(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request_id: Option<&str>,
    invitation: &Invitation,
) -> Result<(), StoreError> {
    if invitation.accepted_at.is_some() {
        return Err(StoreError::Conflict(
            "the invitation was already accepted; remove the member instead".into(),
        ));
    }
    sqlx::query("UPDATE invitations SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(invitation.id.to_string())
        .execute(&mut **tx)
        .await?;
    audit::record(
        tx,
        actor,
        request_id,
        Change::new("invitation.revoke", "invitation", invitation.id).tenant(invitation.tenant_id),
    )
    .await
}

/// The person accepting, as the audit log names them.
fn person(id: Option<Uuid>, email: &str) -> Actor {
    Actor {
        kind: ActorKind::User,
        id: id.map(|id| id.to_string()),
        label: email.to_string(),
    }
}

/// Why an invitation cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcceptError {
    #[error("the invitation token is unknown, expired, revoked or already used")]
    Invalid,
    #[error("this email already has an account: sign in as it, then accept the invitation")]
    SignInRequired,
    #[error("the invitation is for another email than the account signed in")]
    OtherAccount,
    #[error("choose a password for the new account")]
    PasswordRequired,
}

/// What accepting needs besides the token.
pub struct Acceptance<'a> {
    pub token: &'a str,
    /// For a new account.
    pub password: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The account the caller is signed in as, if any.
    pub signed_in: Option<&'a User>,
}

/// Accepts an invitation: creates the account for a new email (with the
/// caller's password), or adds the signed-in account the email belongs to.
/// Works once.
pub async fn accept(
    tx: &mut Tx<'_>,
    request_id: Option<&str>,
    acceptance: Acceptance<'_>,
) -> Result<Result<(Uuid, Member), AcceptError>, StoreError> {
    let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT i.id, i.tenant_id, i.email, i.role, i.expires_at FROM invitations i \
         JOIN tenants t ON t.id = i.tenant_id \
         WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL \
         AND t.deleted_at IS NULL",
    )
    .bind(token_hash(acceptance.token))
    .fetch_optional(&mut **tx)
    .await?;
    let Some((id, tenant_id, email, role, expires_at)) = row else {
        return Ok(Err(AcceptError::Invalid));
    };
    if expires_at <= now_ms() {
        return Ok(Err(AcceptError::Invalid));
    }
    let tenant_id = parse_id(&tenant_id)?;
    let role = parse_role(&role)?;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM users WHERE email = $1 AND deleted_at IS NULL")
            .bind(&email)
            .fetch_optional(&mut **tx)
            .await?;
    let user = match (existing, acceptance.signed_in) {
        (Some(existing), Some(me)) if me.id.to_string() == existing => me.clone(),
        (Some(_), Some(_)) => return Ok(Err(AcceptError::OtherAccount)),
        (Some(_), None) => return Ok(Err(AcceptError::SignInRequired)),
        (None, Some(me)) if me.email != email => return Ok(Err(AcceptError::OtherAccount)),
        (None, _) => {
            let Some(password) = acceptance.password else {
                return Ok(Err(AcceptError::PasswordRequired));
            };
            users::create(
                tx,
                &person(None, &email),
                request_id,
                NewUser {
                    email: &email,
                    name: acceptance.name,
                    password,
                    is_operator: false,
                },
            )
            .await?
        }
    };
    let actor = person(Some(user.id), &user.email);
    // Guarded on accepted_at: of two acceptances at once, one wins.
    let updated = sqlx::query(
        "UPDATE invitations SET accepted_at = $1, accepted_by = $2 \
         WHERE id = $3 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(user.id.to_string())
    .bind(&id)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(Err(AcceptError::Invalid));
    }
    users::set_membership(tx, &actor, request_id, tenant_id, user.id, role).await?;
    audit::record(
        tx,
        &actor,
        request_id,
        Change::new("invitation.accept", "invitation", &id).tenant(tenant_id),
    )
    .await?;
    Ok(Ok((tenant_id, Member { user, role })))
}
