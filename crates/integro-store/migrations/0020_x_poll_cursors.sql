-- Where polling an X account's mentions and direct messages stopped: the
-- newest id taken in, moved in the transaction that stores what it read.
CREATE TABLE x_poll_cursors (
    account_id  TEXT NOT NULL,
    stream      TEXT NOT NULL,
    last_id     TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, stream)
);
