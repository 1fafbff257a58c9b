-- Whether a queue is busy is asked of its live jobs only (ready or running).
-- Indexed over all jobs, every insert and every change of state wrote a leaf
-- of an index that grows with the job history, at a random place (queue keys
-- are contacts and conversations): on SQLite, a page written per job and
-- state at each commit. Live jobs are few, so their index stays a few pages.
DROP INDEX jobs_queue_key;
CREATE INDEX jobs_queue_live ON jobs (queue_key, state, id) WHERE state IN ('ready', 'running');
