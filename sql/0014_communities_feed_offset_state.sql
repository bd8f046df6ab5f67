-- feedctl: where each consumer of feed_events has got to, as a (txid, id) position.
CREATE TABLE feed_offset_state (
    consumer         text PRIMARY KEY,
    last_txid        xid8 NOT NULL DEFAULT '0'::xid8,
    last_event_id    bigint NOT NULL DEFAULT 0,
    events_processed bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Feeds whose Redis copy missed a write; `feedctl cache repair` rebuilds them.
CREATE TABLE feed_repair (
    feed_kind text NOT NULL CHECK (feed_kind IN ('user', 'community')),
    feed_id   bigint NOT NULL,
    reason    text NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed_kind, feed_id)
);
