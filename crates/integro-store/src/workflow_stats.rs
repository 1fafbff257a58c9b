//! Workflow statistics (#37), per definition over a period: instances by
//! state and status, time spent in each state (p50, p90) and the SLA
//! breach rate. Read from the instances and their events; at most
//! `MAX_EVENTS` events of the period are read for the times.

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

use crate::{Db, StoreError, parse_id};

/// The most transition events one request reads for the times in state.
pub const MAX_EVENTS: i64 = 200_000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DefinitionStats {
    pub definition_id: Uuid,
    pub key: String,
    /// Instances started in the period.
    pub started: i64,
    /// Those instances now, by state and status.
    pub by_state: Vec<StateCount>,
    /// Time spent in each state left during the period.
    pub time_in_state: Vec<StateTime>,
    /// Instances active in the period whose (last) SLA ran, and how many
    /// of them breached it.
    pub sla_instances: i64,
    pub sla_breached: i64,
    /// `sla_breached / sla_instances`; absent without SLAs.
    pub sla_breach_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StateCount {
    pub state: String,
    pub status: String,
    pub instances: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StateTime {
    pub state: String,
    /// Times the state was left.
    pub exits: i64,
    pub p50_seconds: f64,
    pub p90_seconds: f64,
}

/// Statistics for instances and events between `from_ms` and `to_ms`.
pub async fn stats(
    db: &Db,
    tenant_id: Uuid,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<DefinitionStats>, StoreError> {
    let tenant = tenant_id.to_string();
    let definitions: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, key FROM workflow_definitions WHERE tenant_id = $1 ORDER BY key",
    )
    .bind(&tenant)
    .fetch_all(db.pool())
    .await?;
    let counts: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT definition_id, state, status, COUNT(*) FROM workflow_instances \
         WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND deleted_at IS NULL \
         GROUP BY definition_id, state, status ORDER BY definition_id, state, status",
    )
    .bind(&tenant)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db.pool())
    .await?;
    // Every instance's entries into states (creation and transitions), in
    // order, to measure the time until it left each.
    let moves: Vec<(String, String, String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT i.definition_id, e.instance_id, e.name, e.payload, e.created_at FROM workflow_events e \
         JOIN workflow_instances i ON i.id = e.instance_id \
         WHERE e.tenant_id = $1 AND e.created_at < $3 AND i.tenant_id = $1 \
         AND (i.status = 'active' OR i.updated_at >= $2) \
         AND e.name IN ('workflow.instance.created', 'workflow.instance.transitioned', \
         'workflow.instance.migrated') \
         ORDER BY e.instance_id, e.id LIMIT {MAX_EVENTS}"
    )))
    .bind(&tenant)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db.pool())
    .await?;
    let sla: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT definition_id, COUNT(*), \
         SUM(CASE WHEN sla_status = 'breached' THEN 1 ELSE 0 END) FROM workflow_instances \
         WHERE tenant_id = $1 AND sla_status IS NOT NULL AND updated_at >= $2 AND created_at < $3 \
         AND deleted_at IS NULL GROUP BY definition_id",
    )
    .bind(&tenant)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db.pool())
    .await?;

    let mut times: HashMap<(String, String), Vec<i64>> = HashMap::new();
    // The instance and time of its last entry into a state.
    let mut last: Option<(String, i64)> = None;
    for (definition, instance, name, payload, at) in moves {
        // A migration enters a state as a transition does.
        if (name == "workflow.instance.transitioned" || name == "workflow.instance.migrated")
            && let Some((i, since)) = &last
            && *i == instance
            && at >= from_ms
        {
            let payload: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
            let left = payload["from"].as_str().or(payload["from_state"].as_str());
            if let Some(state) = left.filter(|s| !s.is_empty()) {
                times
                    .entry((definition.clone(), state.to_string()))
                    .or_default()
                    .push(at - since);
            }
        }
        last = Some((instance, at));
    }

    let mut out = Vec::with_capacity(definitions.len());
    for (id, key) in definitions {
        let by_state: Vec<StateCount> = counts
            .iter()
            .filter(|c| c.0 == id)
            .map(|c| StateCount {
                state: c.1.clone(),
                status: c.2.clone(),
                instances: c.3,
            })
            .collect();
        let mut time_in_state: Vec<StateTime> = times
            .iter_mut()
            .filter(|((d, _), _)| *d == id)
            .map(|((_, state), durations)| {
                durations.sort_unstable();
                StateTime {
                    state: state.clone(),
                    exits: durations.len() as i64,
                    p50_seconds: percentile(durations, 50) as f64 / 1000.0,
                    p90_seconds: percentile(durations, 90) as f64 / 1000.0,
                }
            })
            .collect();
        time_in_state.sort_by(|a, b| a.state.cmp(&b.state));
        let (sla_instances, sla_breached) = sla
            .iter()
            .find(|s| s.0 == id)
            .map_or((0, 0), |s| (s.1, s.2));
        let started = by_state.iter().map(|s| s.instances).sum();
        if started == 0 && time_in_state.is_empty() && sla_instances == 0 {
            continue;
        }
        out.push(DefinitionStats {
            definition_id: parse_id(&id)?,
            key,
            started,
            by_state,
            time_in_state,
            sla_instances,
            sla_breached,
            sla_breach_rate: (sla_instances > 0)
                .then(|| sla_breached as f64 / sla_instances as f64),
        });
    }
    Ok(out)
}

/// The `p`th percentile of sorted values (nearest rank).
fn percentile(sorted: &[i64], p: usize) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(super::percentile(&v, 50), 5);
        assert_eq!(super::percentile(&v, 90), 9);
        assert_eq!(super::percentile(&[7], 90), 7);
        assert_eq!(super::percentile(&[], 50), 0);
    }
}
