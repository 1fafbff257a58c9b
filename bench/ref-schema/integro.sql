-- What Integro's ingest commit writes per webhook, as B-trees: the message
-- with its text key and its random dedup key, a reply job with the
-- indexes Integro keeps on it (`jobs_due`, `jobs_tenant`, the live-queue
-- hash), and a webhook-log entry with its tenant index: 11 B-trees, three
-- rows, written by a trigger so that the reference's request path (and its
-- CPU) stays its own.
CREATE UNIQUE INDEX IF NOT EXISTS messages_sid ON messages (message_sid, from_addr);
CREATE INDEX IF NOT EXISTS messages_key ON messages (received_at, id, from_addr);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, tenant TEXT, state TEXT, run_at INTEGER, queue_hash INTEGER, payload TEXT);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, run_at, id);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, state, id);
CREATE INDEX IF NOT EXISTS jobs_queue_live ON jobs (queue_hash) WHERE state IN ('ready', 'running');
CREATE TABLE IF NOT EXISTS webhook_logs (id TEXT PRIMARY KEY, tenant TEXT, headers TEXT, body TEXT);
CREATE INDEX IF NOT EXISTS webhook_logs_tenant ON webhook_logs (tenant, id);
CREATE TRIGGER IF NOT EXISTS fan_out AFTER INSERT ON messages BEGIN
  INSERT INTO jobs VALUES (printf('%016x-0000-7000-8000-%012d', new.received_at * 1000 + new.id, new.id),
    'f0f0f0f0-0000-4000-8000-000000000000', 'ready', new.received_at, random(),
    '{"message_id":"' || new.message_sid || '","request_id":"' || hex(randomblob(8)) || '"}' || substr(new.body, 1, 200));
  INSERT INTO webhook_logs VALUES (printf('%016x-0000-7000-8000-%012d', new.received_at * 1000 + new.id, new.id),
    'f0f0f0f0-0000-4000-8000-000000000000',
    '{"content-type":"application/x-www-form-urlencoded","x-twilio-signature":"[redacted]","user-agent":"TwilioProxy/1.1","host":"bot.example.com"}',
    new.body);
END;
