-- The webhook log's retention purge finds old entries through their ids
-- (webhook_logs::purge): an id is a UUIDv7, whose text begins with its
-- creation time in milliseconds, so the entries created before a time are
-- a range of the primary key. The index on created_at served only that
-- purge, and every webhook wrote an entry to it.
DROP INDEX webhook_logs_created;
