-- Nothing on SQLite: its workers are woken in process, and other processes
-- poll (PostgreSQL's triggers notify them: postgres/0013_job_wakeups.sql).
SELECT 1;
