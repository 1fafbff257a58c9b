-- Workflows (#37): definitions (a draft, as written), their published
-- versions (immutable: an instance runs on the version it started on),
-- instances and their events. The same SQL on SQLite and PostgreSQL.
--
-- An instance's `body` is its whole state between steps (the engine's
-- `InstanceState`, as JSON); `state`, `status`, `seq`, `assignee_id` and the
-- SLA columns repeat what lists filter on. `seq` grows with every step that
-- changes the instance: a step is written only if `seq` is still the one it
-- was computed from, and a timer job fires only if the instance has not
-- moved since the timer was armed.
CREATE TABLE workflow_definitions (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    key             TEXT NOT NULL,
    name            TEXT,
    source          TEXT NOT NULL,
    format          TEXT NOT NULL,
    latest_version  BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE UNIQUE INDEX workflow_definitions_key ON workflow_definitions (tenant_id, key)
    WHERE deleted_at IS NULL;
CREATE INDEX workflow_definitions_tenant ON workflow_definitions (tenant_id, id);

CREATE TABLE workflow_versions (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    definition_id   TEXT NOT NULL,
    version         BIGINT NOT NULL,
    source          TEXT NOT NULL,
    format          TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX workflow_versions_number ON workflow_versions (definition_id, version);

CREATE TABLE workflow_instances (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    definition_id   TEXT NOT NULL,
    version_id      TEXT NOT NULL,
    state           TEXT NOT NULL,
    status          TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    body            TEXT NOT NULL,
    conversation_id TEXT,
    external_ref    TEXT,
    assignee_id     TEXT,
    sla_status      TEXT,
    sla_due_at      BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
-- One instance per external reference and definition (NULLs are distinct).
CREATE UNIQUE INDEX workflow_instances_ref ON workflow_instances (tenant_id, definition_id, external_ref);
CREATE INDEX workflow_instances_tenant ON workflow_instances (tenant_id, id);
CREATE INDEX workflow_instances_assignee ON workflow_instances (assignee_id, status, id);
CREATE INDEX workflow_instances_conversation ON workflow_instances (conversation_id, status);

-- What happened to instances, in order (ids are UUIDv7): an instance's
-- history and the tenant's event stream (`Last-Event-ID`).
CREATE TABLE workflow_events (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    instance_id     TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    name            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    actor           TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX workflow_events_instance ON workflow_events (instance_id, id);
CREATE INDEX workflow_events_tenant ON workflow_events (tenant_id, id);

-- Business calendars SLAs count in (`/api/v1/business-calendars`): weekly
-- hours, a time zone and holidays, as JSON (`BusinessCalendar`).
CREATE TABLE business_calendars (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE UNIQUE INDEX business_calendars_name ON business_calendars (tenant_id, name)
    WHERE deleted_at IS NULL;
