-- feedctl: ranking bookkeeping. Which heuristic the stored scores follow, resumable
-- backfills (checkpoints per phase and per shard), and cache writes a rank run still owes.

-- Every heuristic version scores were computed under, with its coefficients: a version
-- name can never silently mean two formulas. The most recently adopted one is current.
CREATE TABLE rank_heuristic (
    version       text PRIMARY KEY,
    coefficients  jsonb NOT NULL,
    first_used_at timestamptz NOT NULL DEFAULT now(),
    adopted_at    timestamptz NOT NULL DEFAULT now()
);

-- One backfill: every score recomputed under one heuristic. Positions are keyset
-- positions (ids at or below them are done); they advance in the same transaction as
-- the rows they cover, so a run killed anywhere resumes where it stopped.
CREATE TABLE rank_backfill (
    id                  bigserial PRIMARY KEY,
    heuristic_version   text NOT NULL REFERENCES rank_heuristic (version),
    coefficients        jsonb NOT NULL,
    shard_count         integer NOT NULL CHECK (shard_count BETWEEN 1 AND 4096),
    state               text NOT NULL DEFAULT 'unfinished'
                        CHECK (state IN ('unfinished', 'done', 'replaced')),
    posts_after         bigint NOT NULL DEFAULT -9223372036854775808,
    posts_rescored      bigint NOT NULL DEFAULT 0,
    posts_done_at       timestamptz,
    communities_after   bigint NOT NULL DEFAULT -9223372036854775808,
    communities_done_at timestamptz,
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz
);
-- At most one backfill is unfinished at a time.
CREATE UNIQUE INDEX rank_backfill_one_unfinished ON rank_backfill ((true))
    WHERE state = 'unfinished';

-- One shard of a backfill: feed entries of users with user_id mod shard_count = shard
-- (the non-negative modulo, so every user id belongs to exactly one shard).
-- users_after: PostgreSQL is done up to here; cache_after: cached feeds are rewritten
-- up to here (it trails users_after only between a commit and the Redis writes).
CREATE TABLE rank_backfill_shard (
    backfill_id     bigint NOT NULL REFERENCES rank_backfill (id) ON DELETE CASCADE,
    shard           integer NOT NULL CHECK (shard >= 0),
    users_after     bigint NOT NULL DEFAULT -9223372036854775808,
    cache_after     bigint NOT NULL DEFAULT -9223372036854775808,
    entries_updated bigint NOT NULL DEFAULT 0,
    chunks          bigint NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    PRIMARY KEY (backfill_id, shard)
);

-- Posts whose new scores are committed but may not have reached the cached feeds yet
-- (written with the scores, cleared after the Redis writes; replayed by the next run).
CREATE TABLE rank_cache_pending (
    post_id   bigint PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);
