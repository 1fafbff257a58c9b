-- X calls a tenant made, by day (UTC) and kind, to estimate its spend from
-- X's price table (x_spend.rs); counted where the calls are made.
CREATE TABLE x_spend_daily (
    tenant_id  TEXT NOT NULL,
    day        TEXT NOT NULL,
    operation  TEXT NOT NULL,
    count      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, operation)
);
