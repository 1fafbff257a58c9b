//! Labels on conversations: a tenant's small vocabulary (at most
//! `MAX_PER_TENANT`), each conversation carrying at most
//! `MAX_PER_CONVERSATION`. A label is one whatever its case ("VIP", "vip")
//! and keeps the case it was first written in.

use std::collections::{HashMap, HashSet};

use integro_core::new_id;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{from_ms, now_ms};
use crate::{Db, StoreError, Tx, parse_id};

/// The longest label name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// The most labels a tenant holds.
pub const MAX_PER_TENANT: i64 = 100;
/// The most labels on one conversation.
pub const MAX_PER_CONVERSATION: usize = 20;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Label {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A label's name, trimmed: 1 to 40 letters, digits, spaces, `-` and `_`.
pub fn check_name(field: &str, name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::invalid(
            field,
            format!("a label is 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '-' | '_')))
    {
        return Err(StoreError::invalid(
            field,
            format!("`{c}` is not allowed in a label: letters, digits, spaces, - and _ only"),
        ));
    }
    Ok(name.to_string())
}

/// The key a label is found by: its name in lower case.
fn key(name: &str) -> String {
    name.to_lowercase()
}

/// A conversation's labels as asked: each checked, repeats (in any case)
/// dropped, at most `MAX_PER_CONVERSATION`.
pub fn check_set(names: &[String]) -> Result<Vec<String>, StoreError> {
    let mut seen = HashSet::new();
    let mut set = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let name = check_name(&format!("labels[{i}]"), name)?;
        if seen.insert(key(&name)) {
            set.push(name);
        }
    }
    if set.len() > MAX_PER_CONVERSATION {
        return Err(StoreError::invalid(
            "labels",
            format!(
                "a conversation carries at most {MAX_PER_CONVERSATION} labels ({} given)",
                set.len()
            ),
        ));
    }
    Ok(set)
}

/// The tenant's labels, by name.
pub async fn list(db: &Db, tenant_id: Uuid) -> Result<Vec<Label>, StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT id, name, created_at FROM labels WHERE tenant_id = $1 ORDER BY name_key LIMIT $2",
    )
    .bind(tenant_id.to_string())
    .bind(MAX_PER_TENANT)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(id, name, at)| {
            Ok(Label {
                id: parse_id(&id)?,
                name,
                created_at: from_ms(at),
            })
        })
        .collect()
}

/// The labels of each of `conversations` (of `tenant_id`), by name; a
/// conversation without labels is absent.
pub async fn of_conversations(
    db: &Db,
    tenant_id: Uuid,
    conversations: &[Uuid],
) -> Result<HashMap<Uuid, Vec<String>>, StoreError> {
    let mut found: HashMap<Uuid, Vec<String>> = HashMap::new();
    for chunk in conversations.chunks(200) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT cl.conversation_id, l.name FROM conversation_labels cl JOIN labels l ON l.id = cl.label_id \
             WHERE cl.conversation_id IN ({}) AND cl.tenant_id = $1 ORDER BY l.name_key",
            marks.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id.to_string());
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for (conversation, name) in q.fetch_all(db.pool()).await? {
            found
                .entry(parse_id(&conversation)?)
                .or_default()
                .push(name);
        }
    }
    Ok(found)
}

/// One conversation's labels, by name.
pub async fn of_conversation(
    db: &Db,
    tenant_id: Uuid,
    conversation_id: Uuid,
) -> Result<Vec<String>, StoreError> {
    Ok(of_conversations(db, tenant_id, &[conversation_id])
        .await?
        .remove(&conversation_id)
        .unwrap_or_default())
}

/// Replaces a conversation's labels with `names` (from `check_set`),
/// creating the labels the tenant does not have yet, as long as it stays
/// within `MAX_PER_TENANT`. Returns the labels as stored (a known label in
/// the case it was first written), by name. Inside the caller's
/// transaction; the conversation is the caller's to have found in the
/// tenant.
pub async fn set(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    conversation_id: Uuid,
    names: &[String],
) -> Result<Vec<String>, StoreError> {
    let tenant = tenant_id.to_string();
    let now = now_ms();
    let mut chosen: Vec<(String, String)> = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for name in names {
        let found: Option<(String, String)> =
            sqlx::query_as("SELECT id, name FROM labels WHERE tenant_id = $1 AND name_key = $2")
                .bind(&tenant)
                .bind(key(name))
                .fetch_optional(&mut **tx)
                .await?;
        match found {
            Some(label) => chosen.push(label),
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM labels WHERE tenant_id = $1")
            .bind(&tenant)
            .fetch_one(&mut **tx)
            .await?;
        if count + missing.len() as i64 > MAX_PER_TENANT {
            return Err(StoreError::invalid(
                "labels",
                format!(
                    "a tenant has at most {MAX_PER_TENANT} labels and this one has {count}: \
                     use an existing label ({}) or delete unused ones",
                    missing.join(", ")
                ),
            ));
        }
        for name in missing {
            // Another request may create it meanwhile: then it is taken.
            sqlx::query(
                "INSERT INTO labels (id, tenant_id, name, name_key, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id, name_key) DO NOTHING",
            )
            .bind(new_id().to_string())
            .bind(&tenant)
            .bind(&name)
            .bind(key(&name))
            .bind(now)
            .execute(&mut **tx)
            .await?;
            let label: (String, String) = sqlx::query_as(
                "SELECT id, name FROM labels WHERE tenant_id = $1 AND name_key = $2",
            )
            .bind(&tenant)
            .bind(key(&name))
            .fetch_one(&mut **tx)
            .await?;
            chosen.push(label);
        }
    }
    sqlx::query("DELETE FROM conversation_labels WHERE conversation_id = $1")
        .bind(conversation_id.to_string())
        .execute(&mut **tx)
        .await?;
    for (label_id, _) in &chosen {
        sqlx::query(
            "INSERT INTO conversation_labels (conversation_id, label_id, tenant_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(conversation_id.to_string())
        .bind(label_id)
        .bind(&tenant)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    // Open inbox views show the change (they follow `updated_at`).
    sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(conversation_id.to_string())
        .execute(&mut **tx)
        .await?;
    let mut names: Vec<String> = chosen.into_iter().map(|(_, name)| name).collect();
    names.sort_by_key(|n| key(n));
    Ok(names)
}

/// Deletes one of the tenant's labels, and takes it off every
/// conversation. `None` when the tenant has no such label.
pub async fn delete(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    label_id: Uuid,
) -> Result<Option<Label>, StoreError> {
    let found: Option<(String, String, i64)> =
        sqlx::query_as("SELECT id, name, created_at FROM labels WHERE id = $1 AND tenant_id = $2")
            .bind(label_id.to_string())
            .bind(tenant_id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    let Some((id, name, at)) = found else {
        return Ok(None);
    };
    sqlx::query("DELETE FROM conversation_labels WHERE label_id = $1")
        .bind(&id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM labels WHERE id = $1")
        .bind(&id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(Label {
        id: parse_id(&id)?,
        name,
        created_at: from_ms(at),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_short_words() {
        assert_eq!(check_name("l", "  VIP ").unwrap(), "VIP");
        assert!(check_name("l", "Zahlung offen_2-b").is_ok());
        assert!(check_name("l", "").is_err());
        assert!(check_name("l", &"x".repeat(41)).is_err());
        assert!(check_name("l", "a<b").is_err());
        assert!(check_name("l", "tab\there").is_err());
    }

    #[test]
    fn a_set_drops_repeats_in_any_case_and_has_a_limit() {
        let set = check_set(&["VIP".into(), "vip".into(), "billing".into()]).unwrap();
        assert_eq!(set, ["VIP", "billing"]);
        let many: Vec<String> = (0..21).map(|i| format!("l{i}")).collect();
        assert!(check_set(&many).is_err());
    }
}
