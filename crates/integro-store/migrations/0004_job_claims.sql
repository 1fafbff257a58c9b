-- Claiming walks the due jobs of a state in (run_at, id) order and stops at
-- its limit; "no older pending job of the same queue key" is one index range.
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (state, run_at, id);
DROP INDEX jobs_queue_key;
CREATE INDEX jobs_queue_key ON jobs (queue_key, state, id);
