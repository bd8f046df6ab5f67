-- feedctl: backfills that rewrite feed_entry one partition at a time and swap each in
-- (docs/decisions/0032).

-- How a backfill writes feed entries: 'auto' is decided when its post phase is done
-- ('swap' when many posts changed score and feed_entry is partitioned, else 'in_place').
-- Backfills started before this migration keep the in-place path.
ALTER TABLE rank_backfill ADD COLUMN method text NOT NULL DEFAULT 'in_place'
    CHECK (method IN ('auto', 'swap', 'in_place'));
ALTER TABLE rank_backfill ALTER COLUMN method SET DEFAULT 'auto';
ALTER TABLE rank_backfill ADD COLUMN posts_changed bigint NOT NULL DEFAULT 0;

-- One feed_entry partition of a swap backfill: rewritten and swapped in (swapped_at),
-- then its users' cached feeds rewritten up to cache_after, then done.
CREATE TABLE rank_backfill_partition (
    backfill_id    bigint NOT NULL REFERENCES rank_backfill (id) ON DELETE CASCADE,
    partition_name text NOT NULL,
    rows_written   bigint NOT NULL DEFAULT 0,
    swapped_at     timestamptz,
    cache_after    bigint NOT NULL DEFAULT -9223372036854775808,
    done_at        timestamptz,
    PRIMARY KEY (backfill_id, partition_name)
);

-- Keys of feed_entry rows written to a partition while it is being rewritten (by a row
-- trigger on that partition); replayed into the new table before the swap.
CREATE TABLE feed_entry_swap_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition_name text NOT NULL,
    user_id        bigint NOT NULL,
    post_id        bigint NOT NULL
);
CREATE INDEX feed_entry_swap_log_partition_idx ON feed_entry_swap_log (partition_name);

CREATE FUNCTION feedctl_swap_log_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO feed_entry_swap_log (partition_name, user_id, post_id)
        VALUES (TG_TABLE_NAME, OLD.user_id, OLD.post_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO feed_entry_swap_log (partition_name, user_id, post_id)
        VALUES (TG_TABLE_NAME, NEW.user_id, NEW.post_id);
    END IF;
    RETURN NULL;
END
$$;

-- The hash bound of one partition of feed_entry (modulus, remainder); an error for any
-- other table, so that these functions only ever touch feed_entry's partitions.
CREATE FUNCTION feedctl_feed_partition_bound(part text, OUT modulus integer, OUT remainder integer)
LANGUAGE plpgsql AS $$
DECLARE
    found text[];
BEGIN
    SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid), 'modulus (\d+), remainder (\d+)')
    INTO found
    FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
    WHERE c.relname = part AND c.relnamespace = current_schema()::regnamespace
      AND i.inhparent = 'feed_entry'::regclass;
    IF found IS NULL THEN
        RAISE EXCEPTION 'feed_entry has no hash partition named %', part;
    END IF;
    modulus := found[1]::integer;
    remainder := found[2]::integer;
END
$$;

-- Forget a rewrite of a partition that was started and not swapped in: its new table,
-- its trigger and its log. (DROP TRIGGER locks the partition against readers too: only
-- when there is one.)
CREATE FUNCTION feedctl_swap_abandon(part text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM feedctl_feed_partition_bound(part);
    IF EXISTS (SELECT 1 FROM pg_trigger
               WHERE tgrelid = part::regclass AND tgname = 'feedctl_swap_log') THEN
        EXECUTE format('DROP TRIGGER feedctl_swap_log ON %I', part);
    END IF;
    EXECUTE format('DROP TABLE IF EXISTS %I', part || '_swap');
    DELETE FROM feed_entry_swap_log WHERE partition_name = part;
END
$$;

-- Start logging the keys written to a partition (commit this before the rewrite reads it:
-- every write the rewrite's snapshot misses is then in the log).
CREATE FUNCTION feedctl_swap_prepare(part text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM feedctl_swap_abandon(part);
    EXECUTE format(
        'CREATE TRIGGER feedctl_swap_log AFTER INSERT OR UPDATE OR DELETE ON %I '
        'FOR EACH ROW EXECUTE FUNCTION feedctl_swap_log_write()', part
    );
END
$$;

-- Rewrite a partition into <part>_swap with every entry's score taken from post_score,
-- in key order, then build its indexes. The table checks its hash bound from the start
-- (so that attaching it does not scan it under the swap's lock). Readers and writers of
-- the partition go on.
CREATE FUNCTION feedctl_swap_build(part text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    swap text := part || '_swap';
    bound record;
    written bigint;
BEGIN
    SELECT * INTO bound FROM feedctl_feed_partition_bound(part);
    PERFORM set_config('work_mem', '256MB', true);  -- the key-order sort, in memory
    EXECUTE format('CREATE TABLE %I (LIKE feed_entry INCLUDING DEFAULTS)', swap);
    EXECUTE format(
        'ALTER TABLE %I ADD CONSTRAINT feedctl_swap_bound '
        'CHECK (satisfies_hash_partition(%s::oid, %s, %s, user_id))',
        swap, 'feed_entry'::regclass::oid, bound.modulus, bound.remainder
    );
    EXECUTE format(
        'INSERT INTO %I (user_id, post_id, community_id, author_id, score, created_at) '
        'SELECT fe.user_id, fe.post_id, fe.community_id, fe.author_id, '
        '       coalesce(ps.score, fe.score), fe.created_at '
        'FROM %I fe LEFT JOIN post_score ps ON ps.post_id = fe.post_id '
        'ORDER BY fe.user_id, fe.post_id', swap, part
    );
    GET DIAGNOSTICS written = ROW_COUNT;
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (user_id, post_id)',
                   swap, swap || '_pkey');
    EXECUTE format('CREATE INDEX %I ON %I (user_id, score DESC, post_id DESC)',
                   swap || '_rank_idx', swap);
    EXECUTE format('CREATE INDEX %I ON %I (post_id)', swap || '_post_idx', swap);
    EXECUTE format('ANALYZE %I', swap);
    RETURN written;
END
$$;

-- Replay the logged keys into <part>_swap: each key gets the partition's current row (with
-- its post's score), or loses its row when the partition no longer has it. Returns the
-- number of keys replayed.
CREATE FUNCTION feedctl_swap_catch_up(part text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    swap text := part || '_swap';
    users bigint[];
    posts bigint[];
BEGIN
    WITH taken AS (
        DELETE FROM feed_entry_swap_log WHERE partition_name = part RETURNING user_id, post_id
    ), keys AS (SELECT DISTINCT user_id, post_id FROM taken)
    SELECT coalesce(array_agg(user_id), '{}'), coalesce(array_agg(post_id), '{}')
    INTO users, posts FROM keys;
    IF cardinality(users) = 0 THEN
        RETURN 0;
    END IF;
    EXECUTE format(
        'DELETE FROM %I s USING unnest($1, $2) k(user_id, post_id) '
        'WHERE s.user_id = k.user_id AND s.post_id = k.post_id', swap
    ) USING users, posts;
    EXECUTE format(
        'INSERT INTO %I (user_id, post_id, community_id, author_id, score, created_at) '
        'SELECT fe.user_id, fe.post_id, fe.community_id, fe.author_id, '
        '       coalesce(ps.score, fe.score), fe.created_at '
        'FROM unnest($1, $2) k(user_id, post_id) '
        'JOIN %I fe ON fe.user_id = k.user_id AND fe.post_id = k.post_id '
        'LEFT JOIN post_score ps ON ps.post_id = fe.post_id '
        'ORDER BY fe.user_id, fe.post_id', swap, part
    ) USING users, posts;
    RETURN cardinality(users);
END
$$;

-- The swap, in the caller's transaction: lock feed_entry (readers and writers wait, so the
-- caller sets a lock_timeout), replay the last logged keys, detach the partition, attach
-- <part>_swap with the same bound, drop the old one and give the new one its name.
-- Returns the number of keys replayed under the lock.
CREATE FUNCTION feedctl_swap_finish(part text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    swap text := part || '_swap';
    bound record;
    replayed bigint;
BEGIN
    LOCK TABLE feed_entry IN ACCESS EXCLUSIVE MODE;
    SELECT * INTO bound FROM feedctl_feed_partition_bound(part);
    replayed := feedctl_swap_catch_up(part);
    EXECUTE format('ALTER TABLE feed_entry DETACH PARTITION %I', part);
    EXECUTE format('ALTER TABLE feed_entry ATTACH PARTITION %I '
                   'FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                   swap, bound.modulus, bound.remainder);
    EXECUTE format('DROP TABLE %I', part);
    EXECUTE format('ALTER TABLE %I RENAME TO %I', swap, part);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT feedctl_swap_bound', part);
    EXECUTE format('ALTER INDEX %I RENAME TO %I', swap || '_pkey', part || '_pkey');
    EXECUTE format('ALTER INDEX %I RENAME TO %I', swap || '_rank_idx', part || '_rank_idx');
    EXECUTE format('ALTER INDEX %I RENAME TO %I', swap || '_post_idx', part || '_post_idx');
    RETURN replayed;
END
$$;
