-- RSS and Atom feeds a tenant reads for trends, and trends fetched lately
-- (X's by location, the feeds' newest items), kept a while to spare X's
-- limits and costs and the feeds' servers.
CREATE TABLE trend_sources (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    created_by  TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX trend_sources_tenant ON trend_sources (tenant_id, id);

CREATE TABLE trend_cache (
    tenant_id   TEXT NOT NULL,
    cache_key   TEXT NOT NULL,
    body        TEXT NOT NULL,
    fetched_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, cache_key)
);
