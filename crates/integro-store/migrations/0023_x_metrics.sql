-- X metrics (#38, x_metrics.rs). The same SQL on SQLite and PostgreSQL.
--
-- Messages of public threads (X mentions and replies, answered by reply
-- posts), apart from direct messages, counted by the message rollup.
ALTER TABLE message_stats_daily ADD COLUMN public_inbound BIGINT NOT NULL DEFAULT 0;
ALTER TABLE message_stats_daily ADD COLUMN public_outbound BIGINT NOT NULL DEFAULT 0;

-- When a post was last submitted for approval: approval latency counts
-- from here to `approved_at`.
ALTER TABLE posts ADD COLUMN submitted_at BIGINT;

-- A published post's public metrics as X last reported them, refreshed on
-- a schedule (`metrics_at`: when) while the post is recent.
ALTER TABLE posts ADD COLUMN impressions BIGINT;
ALTER TABLE posts ADD COLUMN likes BIGINT;
ALTER TABLE posts ADD COLUMN reposts BIGINT;
ALTER TABLE posts ADD COLUMN replies BIGINT;
ALTER TABLE posts ADD COLUMN quotes BIGINT;
ALTER TABLE posts ADD COLUMN bookmarks BIGINT;
ALTER TABLE posts ADD COLUMN metrics_at BIGINT;
-- Published posts whose metrics are due, oldest refresh first.
CREATE INDEX posts_metrics_due ON posts (state, published_at);
