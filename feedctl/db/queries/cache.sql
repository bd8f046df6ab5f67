-- Feed reads, cache warming, rebuilds, verification and vacuum.
--
-- Pinned reads (docs/decisions/0015): a walk through a feed is pinned to the first page's
-- snapshot, given as (pin_snapshot, pin_at); both NULL on a first page, which takes the
-- pin from its own snapshot. A post whose score was changed by a transaction the pinned
-- snapshot does not see is ordered by the score it had before the first such change
-- ("changed"): its score in that snapshot. Every other post by its current score.

-- user_page_pinned --
One page of a user's feed after a position, in its pinned order, with the pin (one row with NULL post when empty).
WITH pin AS (
    SELECT snapshot, at, coalesce(at - %(retention)s::interval, '-infinity') AS since
    FROM (SELECT coalesce(%(pin_snapshot)s::pg_snapshot, pg_current_snapshot()) AS snapshot,
                 coalesce(%(pin_at)s::timestamptz, now()) AS at) taken
),
changed AS MATERIALIZED (
    SELECT DISTINCT ON (c.post_id) c.post_id, c.old_score AS score
    FROM post_score_change c
    JOIN feed_entry fe ON fe.user_id = %(id)s AND fe.post_id = c.post_id
                      AND fe.created_at >= (SELECT since FROM pin)
    WHERE c.txid >= pg_snapshot_xmin((SELECT snapshot FROM pin))
      AND NOT pg_visible_in_snapshot(c.txid, (SELECT snapshot FROM pin))
    ORDER BY c.post_id, c.id
),
page AS (
    (SELECT fe.post_id, fe.score FROM feed_entry fe
     WHERE fe.user_id = %(id)s AND (fe.score, fe.post_id) < (%(score)s::float8, %(post_id)s::bigint)
       AND fe.created_at >= (SELECT since FROM pin)
       AND fe.post_id NOT IN (SELECT post_id FROM changed)
       AND NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = fe.post_id AND p.deleted_at IS NOT NULL)
     ORDER BY fe.score DESC, fe.post_id DESC
     LIMIT %(limit)s)
    UNION ALL
    SELECT post_id, score FROM changed WHERE (score, post_id) < (%(score)s::float8, %(post_id)s::bigint)
),
top AS (
    SELECT page.post_id, page.score, p.community_id, p.author_id, p.created_at
    FROM page JOIN posts p ON p.id = page.post_id AND p.deleted_at IS NULL
    ORDER BY page.score DESC, page.post_id DESC
    LIMIT %(limit)s
)
SELECT pin.snapshot::text, pin.at, top.post_id, top.community_id, top.author_id, top.created_at,
       top.score
FROM pin LEFT JOIN top ON true
ORDER BY top.score DESC, top.post_id DESC

-- community_page_pinned --
One page of a community's feed after a position, in its pinned order, with the pin (one row with NULL post when empty).
WITH pin AS (
    SELECT snapshot, at, coalesce(at - %(retention)s::interval, '-infinity') AS since
    FROM (SELECT coalesce(%(pin_snapshot)s::pg_snapshot, pg_current_snapshot()) AS snapshot,
                 coalesce(%(pin_at)s::timestamptz, now()) AS at) taken
),
changed AS MATERIALIZED (
    SELECT DISTINCT ON (c.post_id) c.post_id, c.old_score AS score
    FROM post_score_change c
    JOIN post_score ps ON ps.post_id = c.post_id AND ps.community_id = %(id)s
    JOIN posts p ON p.id = c.post_id AND p.created_at >= (SELECT since FROM pin)
    WHERE c.txid >= pg_snapshot_xmin((SELECT snapshot FROM pin))
      AND NOT pg_visible_in_snapshot(c.txid, (SELECT snapshot FROM pin))
    ORDER BY c.post_id, c.id
),
page AS (
    (SELECT ps.post_id, ps.score FROM post_score ps
     WHERE ps.community_id = %(id)s AND (ps.score, ps.post_id) < (%(score)s::float8, %(post_id)s::bigint)
       AND ps.post_id NOT IN (SELECT post_id FROM changed)
       AND NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = ps.post_id
                       AND (p.deleted_at IS NOT NULL OR p.created_at < (SELECT since FROM pin)))
     ORDER BY ps.score DESC, ps.post_id DESC
     LIMIT %(limit)s)
    UNION ALL
    SELECT post_id, score FROM changed WHERE (score, post_id) < (%(score)s::float8, %(post_id)s::bigint)
),
top AS (
    SELECT page.post_id, page.score, p.community_id, p.author_id, p.created_at
    FROM page JOIN posts p ON p.id = page.post_id AND p.deleted_at IS NULL
    ORDER BY page.score DESC, page.post_id DESC
    LIMIT %(limit)s
)
SELECT pin.snapshot::text, pin.at, top.post_id, top.community_id, top.author_id, top.created_at,
       top.score
FROM pin LEFT JOIN top ON true
ORDER BY top.score DESC, top.post_id DESC

-- user_cached_page_check --
What a page read from a user's cached feed must agree with: the pin, the live unchanged entries among the cached ids (current score), the changed entries below the position (pinned score), and how many live unchanged entries lie between the floor and the position.
WITH pin AS (
    SELECT snapshot, at, coalesce(at - %(retention)s::interval, '-infinity') AS since
    FROM (SELECT coalesce(%(pin_snapshot)s::pg_snapshot, pg_current_snapshot()) AS snapshot,
                 coalesce(%(pin_at)s::timestamptz, now()) AS at) taken
),
changed AS MATERIALIZED (
    SELECT DISTINCT ON (c.post_id) c.post_id, c.old_score AS score
    FROM post_score_change c
    JOIN feed_entry fe ON fe.user_id = %(id)s AND fe.post_id = c.post_id
                      AND fe.created_at >= (SELECT since FROM pin)
    WHERE c.txid >= pg_snapshot_xmin((SELECT snapshot FROM pin))
      AND NOT pg_visible_in_snapshot(c.txid, (SELECT snapshot FROM pin))
    ORDER BY c.post_id, c.id
),
listed AS (
    SELECT false AS changed, fe.post_id, fe.score FROM feed_entry fe
    WHERE fe.user_id = %(id)s AND fe.post_id = ANY(%(post_ids)s::bigint[])
      AND fe.created_at >= (SELECT since FROM pin)
      AND fe.post_id NOT IN (SELECT post_id FROM changed)
    UNION ALL
    SELECT true, post_id, score FROM changed WHERE (score, post_id) < (%(score)s::float8, %(post_id)s::bigint)
),
in_range AS (
    SELECT count(*) AS entries FROM feed_entry fe
    WHERE fe.user_id = %(id)s
      AND (fe.score, fe.post_id) < (%(score)s::float8, %(post_id)s::bigint)
      AND (fe.score, fe.post_id) >= (%(floor_score)s::float8, %(floor_post_id)s::bigint)
      AND fe.created_at >= (SELECT since FROM pin)
      AND fe.post_id NOT IN (SELECT post_id FROM changed)
      AND NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = fe.post_id AND p.deleted_at IS NOT NULL)
)
SELECT pin.snapshot::text, pin.at, in_range.entries, l.changed, l.post_id, p.community_id,
       p.author_id, p.created_at, l.score
FROM pin CROSS JOIN in_range
LEFT JOIN (listed l JOIN posts p ON p.id = l.post_id AND p.deleted_at IS NULL) ON true

-- community_cached_page_check --
What a page read from a community's cached feed must agree with: the pin, the live unchanged posts among the cached ids (current score), the changed posts below the position (pinned score), and how many live unchanged posts lie between the floor and the position.
WITH pin AS (
    SELECT snapshot, at, coalesce(at - %(retention)s::interval, '-infinity') AS since
    FROM (SELECT coalesce(%(pin_snapshot)s::pg_snapshot, pg_current_snapshot()) AS snapshot,
                 coalesce(%(pin_at)s::timestamptz, now()) AS at) taken
),
changed AS MATERIALIZED (
    SELECT DISTINCT ON (c.post_id) c.post_id, c.old_score AS score
    FROM post_score_change c
    JOIN post_score ps ON ps.post_id = c.post_id AND ps.community_id = %(id)s
    JOIN posts p ON p.id = c.post_id AND p.created_at >= (SELECT since FROM pin)
    WHERE c.txid >= pg_snapshot_xmin((SELECT snapshot FROM pin))
      AND NOT pg_visible_in_snapshot(c.txid, (SELECT snapshot FROM pin))
    ORDER BY c.post_id, c.id
),
listed AS (
    SELECT false AS changed, ps.post_id, ps.score FROM post_score ps
    WHERE ps.community_id = %(id)s AND ps.post_id = ANY(%(post_ids)s::bigint[])
      AND EXISTS (SELECT 1 FROM posts p WHERE p.id = ps.post_id
                  AND p.created_at >= (SELECT since FROM pin))
      AND ps.post_id NOT IN (SELECT post_id FROM changed)
    UNION ALL
    SELECT true, post_id, score FROM changed WHERE (score, post_id) < (%(score)s::float8, %(post_id)s::bigint)
),
in_range AS (
    SELECT count(*) AS entries FROM post_score ps
    WHERE ps.community_id = %(id)s
      AND (ps.score, ps.post_id) < (%(score)s::float8, %(post_id)s::bigint)
      AND (ps.score, ps.post_id) >= (%(floor_score)s::float8, %(floor_post_id)s::bigint)
      AND ps.post_id NOT IN (SELECT post_id FROM changed)
      AND NOT EXISTS (SELECT 1 FROM posts p WHERE p.id = ps.post_id
                       AND (p.deleted_at IS NOT NULL OR p.created_at < (SELECT since FROM pin)))
)
SELECT pin.snapshot::text, pin.at, in_range.entries, l.changed, l.post_id, p.community_id,
       p.author_id, p.created_at, l.score
FROM pin CROSS JOIN in_range
LEFT JOIN (listed l JOIN posts p ON p.id = l.post_id AND p.deleted_at IS NULL) ON true

-- rebuild_user_feeds_apply --
Rewrite several users' feeds to their recomputed retained feed in one statement (lock their entries in (user_id, post_id) order, delete what should go, insert what is missing, fix rows that differ); counts before, after, removed, added, updated.
WITH desired AS MATERIALIZED (
    SELECT u.id AS user_id, top.post_id, top.community_id, top.author_id, top.score,
           top.created_at
    FROM unnest(%(ids)s::bigint[]) AS u(id)
    CROSS JOIN LATERAL (
        SELECT ps.post_id, p.community_id, p.author_id, ps.score, p.created_at
        FROM memberships m
        JOIN post_score ps ON ps.community_id = m.community_id
        JOIN posts p ON p.id = ps.post_id AND p.deleted_at IS NULL
        WHERE m.user_id = u.id
          AND p.created_at >= coalesce(%(since)s::timestamptz, '-infinity')
    ) top
),
present AS MATERIALIZED (  -- read first (by `before`): every row locked in key order (0037)
    SELECT user_id, post_id FROM feed_entry WHERE user_id = ANY(%(ids)s)
    ORDER BY user_id, post_id
    FOR UPDATE
),
before AS (SELECT count(*) AS entries FROM present),
removed AS (
    DELETE FROM feed_entry fe
    USING present pr
    WHERE fe.user_id = pr.user_id AND fe.post_id = pr.post_id
      AND NOT EXISTS (SELECT 1 FROM desired d
                      WHERE d.user_id = fe.user_id AND d.post_id = fe.post_id)
    RETURNING 1
),
written AS (
    INSERT INTO feed_entry AS fe (user_id, post_id, community_id, author_id, score, created_at)
    SELECT user_id, post_id, community_id, author_id, score, created_at
    FROM desired ORDER BY user_id, post_id
    ON CONFLICT (user_id, post_id) DO UPDATE
    SET community_id = excluded.community_id, author_id = excluded.author_id,
        score = excluded.score, created_at = excluded.created_at
    WHERE (fe.community_id, fe.author_id, fe.score, fe.created_at)
          IS DISTINCT FROM (excluded.community_id, excluded.author_id, excluded.score,
                            excluded.created_at)
    RETURNING fe.user_id, fe.post_id
),
counted AS (  -- a partitioned table has no xmax to tell inserts from updates
    SELECT count(*) FILTER (WHERE pr.post_id IS NULL) AS added,
           count(*) FILTER (WHERE pr.post_id IS NOT NULL) AS updated
    FROM written w LEFT JOIN present pr ON pr.user_id = w.user_id AND pr.post_id = w.post_id
)
SELECT (SELECT entries FROM before), (SELECT count(*) FROM desired),
       (SELECT count(*) FROM removed), (SELECT added FROM counted), (SELECT updated FROM counted)

-- rebuild_user_feeds_plan --
What rebuilding several users' feeds would change, changing nothing: counts before, after, removed, added, updated, and the first changes (NULL score before: added; NULL after: removed).
WITH desired AS MATERIALIZED (
    SELECT u.id AS user_id, top.post_id, top.community_id, top.author_id, top.score,
           top.created_at
    FROM unnest(%(ids)s::bigint[]) AS u(id)
    CROSS JOIN LATERAL (
        SELECT ps.post_id, p.community_id, p.author_id, ps.score, p.created_at
        FROM memberships m
        JOIN post_score ps ON ps.community_id = m.community_id
        JOIN posts p ON p.id = ps.post_id AND p.deleted_at IS NULL
        WHERE m.user_id = u.id
          AND p.created_at >= coalesce(%(since)s::timestamptz, '-infinity')
    ) top
),
present AS MATERIALIZED (
    SELECT user_id, post_id, community_id, author_id, score, created_at
    FROM feed_entry WHERE user_id = ANY(%(ids)s)
),
diff AS MATERIALIZED (
    SELECT coalesce(c.user_id, d.user_id) AS user_id, coalesce(c.post_id, d.post_id) AS post_id,
           c.score AS score_before, d.score AS score_after
    FROM present c FULL JOIN desired d ON d.user_id = c.user_id AND d.post_id = c.post_id
    WHERE c.post_id IS NULL OR d.post_id IS NULL
       OR (c.community_id, c.author_id, c.score, c.created_at)
          IS DISTINCT FROM (d.community_id, d.author_id, d.score, d.created_at)
),
totals AS (
    SELECT (SELECT count(*) FROM present) AS before, (SELECT count(*) FROM desired) AS after,
           count(*) FILTER (WHERE score_after IS NULL AND score_before IS NOT NULL) AS removed,
           count(*) FILTER (WHERE score_before IS NULL) AS added,
           count(*) FILTER (WHERE score_before IS NOT NULL AND score_after IS NOT NULL)
               AS updated
    FROM diff
)
SELECT t.before, t.after, t.removed, t.added, t.updated,
       s.user_id, s.post_id, s.score_before, s.score_after
FROM totals t
LEFT JOIN LATERAL (
    SELECT * FROM diff ORDER BY user_id, post_id LIMIT %(sample)s
) s ON true

-- rebuild_run_start --
Begin a rebuild of every feed from the first user, forgetting any unfinished run.
INSERT INTO feed_rebuild_run (name, cap) VALUES (%(name)s, %(cap)s)
ON CONFLICT (name) DO UPDATE
SET cap = excluded.cap, last_user_id = 0, users_done = 0, started_at = now(),
    updated_at = now(), finished_at = NULL

-- rebuild_run_unfinished --
Where an unfinished rebuild of every feed got to, if there is one.
SELECT cap, last_user_id, users_done, started_at FROM feed_rebuild_run
WHERE name = %(name)s AND finished_at IS NULL

-- rebuild_run_advance --
Record a chunk of users whose feeds are rebuilt in PostgreSQL and Redis.
UPDATE feed_rebuild_run
SET last_user_id = %(last_user_id)s, users_done = users_done + %(users)s, updated_at = now()
WHERE name = %(name)s

-- rebuild_run_finish --
Record that a rebuild of every feed reached the last user.
UPDATE feed_rebuild_run SET finished_at = now(), updated_at = now() WHERE name = %(name)s

-- count_users_after --
How many users have an id above a given one.
SELECT count(*) FROM users WHERE id > %(after)s

-- count_members --
How many members a community has.
SELECT count(*) FROM memberships WHERE community_id = %(community_id)s

-- existing_community_ids --
Which of these community ids exist.
SELECT id FROM communities WHERE id = ANY(%(ids)s)

-- user_activity --
Which of these users exist, and whether each was active since a time.
SELECT id, coalesce(last_active_at >= %(since)s, false) FROM users WHERE id = ANY(%(ids)s)

-- prune_score_changes --
Forget up to a batch of score changes older than a time (no cursor can need them); how many.
WITH gone AS (
    DELETE FROM post_score_change
    WHERE id IN (SELECT id FROM post_score_change WHERE changed_at < %(before)s
                 ORDER BY id LIMIT %(limit)s)
    RETURNING 1
)
SELECT count(*) FROM gone

-- count_prunable_score_changes --
How many score changes are older than a time.
SELECT count(*) FROM post_score_change WHERE changed_at < %(before)s

-- all_community_ids --
Every community id, in order.
SELECT id FROM communities ORDER BY id

-- user_feed_tops_text --
The best cap+1 entries of each of several user feeds, in the order of the ids, as text ready for Redis: the count, "score post_id community:author:created_us ..." best first, and the snapshot they were read at.
SELECT u.id, top.entries, top.pairs, pg_current_snapshot()::text
FROM unnest(%(ids)s::bigint[]) WITH ORDINALITY AS u(id, n)
CROSS JOIN LATERAL (
    SELECT count(*) AS entries,
           string_agg(t.score::text || ' ' || t.post_id::text || ' '
                      || feedctl_post_details(t.community_id, t.author_id, t.created_at), ' '
                      ORDER BY t.score DESC, t.post_id DESC) AS pairs
    FROM (SELECT post_id, score, community_id, author_id, created_at FROM feed_entry
          WHERE user_id = u.id
            AND created_at >= coalesce(now() - %(retention)s::interval, '-infinity')
          ORDER BY score DESC, post_id DESC LIMIT %(limit)s) t
) top
ORDER BY u.n

-- community_feed_tops_text --
The best cap+1 live posts of each of several communities, in the order of the ids, as text ready for Redis: the count, "score post_id community:author:created_us ..." best first, and the snapshot they were read at.
SELECT c.id, top.entries, top.pairs, pg_current_snapshot()::text
FROM unnest(%(ids)s::bigint[]) WITH ORDINALITY AS c(id, n)
CROSS JOIN LATERAL (
    SELECT count(*) AS entries,
           string_agg(t.score::text || ' ' || t.post_id::text || ' '
                      || feedctl_post_details(t.community_id, t.author_id, t.created_at), ' '
                      ORDER BY t.score DESC, t.post_id DESC) AS pairs
    FROM (SELECT ps.post_id, ps.score, ps.community_id, p.author_id, p.created_at
          FROM post_score ps JOIN posts p ON p.id = ps.post_id
          WHERE ps.community_id = c.id
            AND p.created_at >= coalesce(now() - %(retention)s::interval, '-infinity')
          ORDER BY ps.score DESC, ps.post_id DESC LIMIT %(limit)s) t
) top
ORDER BY c.n

-- exact_float_text --
Make float8 text output exact (shortest round-trip form) for the rest of the transaction.
SELECT set_config('extra_float_digits', '1', true)

-- cache_state --
What a reader needs to serve pages from Redis alone (docs/decisions/0029), in one snapshot: the snapshot and its time; which writers owe cache writes (fanout, rank, rebuild, backfill: committed in PostgreSQL, not all done in Redis); up to `limit` feeds marked for repair; up to `limit` posts deleted that fan-out has not removed yet; whether any community is pulled.
SELECT pg_current_snapshot()::text, now(),
       array_remove(ARRAY[
           CASE WHEN EXISTS (SELECT 1 FROM feed_offset_state WHERE cache_from_txid IS NOT NULL)
                THEN 'fanout' END,
           CASE WHEN EXISTS (SELECT 1 FROM rank_cache_pending) THEN 'rank' END,
           CASE WHEN EXISTS (SELECT 1 FROM feed_rebuild_run WHERE finished_at IS NULL)
                THEN 'rebuild' END,
           CASE WHEN EXISTS (SELECT 1 FROM rank_backfill WHERE state = 'unfinished')
                THEN 'backfill' END], NULL),
       ARRAY(SELECT feed_kind || ':' || feed_id FROM feed_repair LIMIT %(limit)s),
       ARRAY(SELECT e.post_id FROM feed_events e
             WHERE e.kind = 'post_deleted'
               AND (e.txid, e.id) > (
                   SELECT o.txid, o.id FROM (
                       SELECT last_txid, last_event_id FROM feed_offset_state
                       UNION ALL SELECT '0'::xid8, 0::bigint) o(txid, id)
                   ORDER BY (o.txid, o.id) = ('0'::xid8, 0::bigint), o.txid, o.id LIMIT 1)
             LIMIT %(limit)s),
       EXISTS (SELECT 1 FROM feed_pull_community)

-- post_details --
Some posts' details as cached feeds keep them (they never change: no snapshot needed), for fenced cache writes and `cache verify`.
SELECT id, feedctl_post_details(community_id, author_id, created_at) FROM posts WHERE id = ANY(%(ids)s)
