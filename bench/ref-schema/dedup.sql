-- The reference's table plus the one thing the message loop issue asks of
-- every webhook that the reference leaves out: a unique index on the
-- provider's message id (Integro's `messages_provider_id`), whose keys
-- are random, so every insert lands on a random leaf.
CREATE UNIQUE INDEX IF NOT EXISTS messages_sid ON messages (message_sid, from_addr);
