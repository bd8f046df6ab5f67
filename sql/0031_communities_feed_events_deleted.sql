-- feedctl: the deletions fan-out has not processed yet, found without a scan of the stream.
-- A reader serving pages from Redis alone leaves these posts out (docs/decisions/0029).
CREATE INDEX feed_events_deleted_idx ON feed_events (txid, id) WHERE kind = 'post_deleted';
