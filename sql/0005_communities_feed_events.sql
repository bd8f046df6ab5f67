-- App contract: the stream the app appends to in the same transaction as the change.
-- txid records the writing transaction, so that a consumer can tell which events
-- are safe to read: every transaction older than the snapshot's xmin has ended.
CREATE TABLE feed_events (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('post_created', 'post_deleted', 'member_joined', 'member_left')),
    post_id      bigint,
    community_id bigint NOT NULL,
    user_id      bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX feed_events_txid_id_idx ON feed_events (txid, id);
