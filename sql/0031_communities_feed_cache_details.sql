-- feedctl: what pages served from Redis alone need (docs/decisions/0029).
-- The deletions fan-out has not processed yet, found without a scan of the stream: a reader
-- serving pages from Redis alone leaves these posts out.
CREATE INDEX feed_events_deleted_idx ON feed_events (txid, id) WHERE kind = 'post_deleted';

-- A post's details as a cached feed keeps them beside its entries: "community:author:created",
-- the creation time in microseconds since the epoch. Every query that writes the cache and
-- `cache verify` spell them with this one function.
CREATE FUNCTION feedctl_post_details(community_id bigint, author_id bigint, created_at timestamptz)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT community_id::text || ':' || author_id::text || ':'
           || (extract(epoch FROM created_at) * 1000000)::bigint::text
$$;
