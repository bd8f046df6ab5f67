-- feedctl: feed_entry hash-partitioned by user_id (docs/decisions/0031).
--
-- feedctl_partition_feed_entry(n) rebuilds feed_entry as n hash partitions of user_id,
-- feed_entry_p0 .. feed_entry_p{n-1}, moving every row in one transaction (under an
-- ACCESS EXCLUSIVE lock: readers and writers wait for it). It converts an unpartitioned
-- table and also changes the partition count of a partitioned one (docs/scaling.md).
-- Every unique key includes user_id, so Citus can distribute the same schema with
-- create_distributed_table('feed_entry', 'user_id').
--
-- `feedctl migrate up` passes the `feed_partitions` setting as feedctl.feed_partitions;
-- without it (plain psql) the count is 16.
CREATE FUNCTION feedctl_partition_feed_entry(partitions integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    moved bigint;
BEGIN
    IF partitions IS NULL OR partitions < 1 OR partitions > 1024 THEN
        RAISE EXCEPTION 'feed_entry partitions must be between 1 and 1024, got %', partitions;
    END IF;
    LOCK TABLE feed_entry IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE feed_entry RENAME TO feed_entry_before;
    -- the old partitions (when repartitioning) give up their names to the new ones
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'feed_entry_before'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', part.relname, 'before_' || part.relname);
    END LOOP;
    CREATE TABLE feed_entry (
        user_id      bigint NOT NULL,
        post_id      bigint NOT NULL,
        community_id bigint NOT NULL,
        author_id    bigint NOT NULL,
        score        double precision NOT NULL,
        created_at   timestamptz NOT NULL
    ) PARTITION BY HASH (user_id);
    FOR i IN 0 .. partitions - 1 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF feed_entry FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
            'feed_entry_p' || i, partitions, i
        );
    END LOOP;
    -- rows in key order, indexes built after loading (MEASURED.md: several times faster)
    INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at)
    SELECT user_id, post_id, community_id, author_id, score, created_at
    FROM feed_entry_before ORDER BY user_id, post_id;
    GET DIAGNOSTICS moved = ROW_COUNT;
    DROP TABLE feed_entry_before CASCADE;
    ALTER TABLE feed_entry ADD CONSTRAINT feed_entry_pkey PRIMARY KEY (user_id, post_id);
    CREATE INDEX feed_entry_rank_idx ON feed_entry (user_id, score DESC, post_id DESC);
    CREATE INDEX feed_entry_post_idx ON feed_entry (post_id);
    ANALYZE feed_entry;
    RETURN moved;
END
$$;

SELECT feedctl_partition_feed_entry(
    coalesce(nullif(current_setting('feedctl.feed_partitions', true), ''), '16')::integer
);
