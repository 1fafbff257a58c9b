-- Whether a queue is busy is asked through an 8-byte hash of its key
-- (jobs::queue_hash), not the key itself. Keys are ~70 bytes (a contact or
-- a conversation), and with the job's id each entry of the live-queue index
-- was ~115: under a backlog that index grows by a job per webhook, at a
-- random place, and its leaves and their splits were a fifth of the bytes a
-- webhook wrote to SQLite's WAL. A hash shared by two keys only makes their
-- queues take turns. Jobs stored before this migration get their hash when
-- the store opens (`Db::migrate`).
ALTER TABLE jobs ADD COLUMN queue_hash BIGINT;
DROP INDEX jobs_queue_live;
CREATE INDEX jobs_queue_live ON jobs (queue_hash) WHERE state IN ('ready', 'running');
