-- feedctl: how many shards a fan-out consumer runs as (docs/decisions/0033). No row: one.
-- With N > 1 shards, shard i/N keeps its own position in feed_offset_state under the name
-- '<consumer>#i/N' and writes only the feeds of users with user_id mod N = i;
-- `feedctl fanout reshard` changes N with every shard stopped at one common position.
CREATE TABLE feed_fanout_layout (
    consumer    text PRIMARY KEY,
    shard_count integer NOT NULL CHECK (shard_count BETWEEN 1 AND 4096),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
