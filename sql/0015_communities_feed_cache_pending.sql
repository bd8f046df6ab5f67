-- feedctl: the stream range whose Redis writes may not have happened yet.
-- Set in the same transaction that commits a fan-out batch, cleared once the cached feeds
-- are written (or marked for repair), so a crash between the two is replayed on restart.
ALTER TABLE feed_offset_state
    ADD COLUMN cache_from_txid     xid8,
    ADD COLUMN cache_from_event_id bigint;
