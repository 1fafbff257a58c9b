-- Work that must run once across all processes (retention, later SLA and
-- post schedules): a process runs a task only after moving its
-- `next_run_at` forward itself, in one conditional UPDATE.
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    next_run_at  BIGINT NOT NULL,
    runs         BIGINT NOT NULL DEFAULT 0,
    last_run_by  TEXT,
    last_run_at  BIGINT
);

-- Rate limits shared by the processes on one PostgreSQL database. SQLite
-- serves the API from one process, whose limits are in memory; the table
-- exists on both so that the schemas match.
CREATE TABLE rate_limits (
    key  TEXT PRIMARY KEY,
    -- GCRA's theoretical arrival time, in ms since the epoch.
    tat  BIGINT NOT NULL
);
