-- A job that becomes ready wakes idle workers in every process at once
-- (`job_wakeups.rs`): a notification per transaction (PostgreSQL folds
-- identical ones), delivered at commit. Only jobs made ready notify: the
-- ingest leases most reply jobs to its own worker, and those need nobody.
CREATE FUNCTION integro_job_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('integro_jobs', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_ready_on_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.state = 'ready') EXECUTE FUNCTION integro_job_ready();

CREATE TRIGGER jobs_ready_on_update AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'ready' AND OLD.state <> 'ready') EXECUTE FUNCTION integro_job_ready();
