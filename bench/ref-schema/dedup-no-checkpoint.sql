-- `dedup.sql` with SQLite's checkpoints off (the WAL grows without end):
-- a diagnosis only, to tell the checkpoints' cost from the rest.
PRAGMA wal_autocheckpoint = 0;
CREATE UNIQUE INDEX IF NOT EXISTS messages_sid ON messages (message_sid, from_addr);
