-- `dedup.sql` with a 64 MiB page cache (SQLite's default is 2 MiB): tells
-- reading the index's pages from the cost of writing them back.
PRAGMA cache_size = -65536;
CREATE UNIQUE INDEX IF NOT EXISTS messages_sid ON messages (message_sid, from_addr);
