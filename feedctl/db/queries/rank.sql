-- Ranking: nightly rescoring, heuristic versions, resumable backfills and their previews.

-- try_named_lock_shared --
Take a shared session-level advisory lock named by text, without waiting.
SELECT pg_try_advisory_lock_shared(hashtext(%(name)s))

-- named_unlock_shared --
Release a shared session-level advisory lock named by text.
SELECT pg_advisory_unlock_shared(hashtext(%(name)s))

-- rank_heuristic_known --
The coefficients a heuristic version was first used with, if it was used before.
SELECT coefficients FROM rank_heuristic WHERE version = %(version)s

-- rank_heuristic_record --
Remember a heuristic version and its coefficients (kept as first seen).
INSERT INTO rank_heuristic (version, coefficients) VALUES (%(version)s, %(coefficients)s)
ON CONFLICT (version) DO NOTHING

-- rank_heuristic_adopt --
Make a recorded heuristic version the current one.
UPDATE rank_heuristic SET adopted_at = clock_timestamp() WHERE version = %(version)s

-- rank_heuristic_current --
The heuristic the stored scores follow (the most recently adopted), if any.
SELECT version, coefficients, adopted_at FROM rank_heuristic
ORDER BY adopted_at DESC, version DESC LIMIT 1

-- rank_changed_posts --
Live posts whose inputs or heuristic version differ from those of their stored score.
SELECT p.id AS post_id, p.community_id, p.created_at, p.reactions_count, p.comments_count,
       coalesce(u.reputation, 0)::float8 AS reputation, ps.score AS old_score
FROM posts p
LEFT JOIN users u ON u.id = p.author_id
LEFT JOIN post_score ps ON ps.post_id = p.id
WHERE p.deleted_at IS NULL AND p.id > %(after)s
  AND (%(everything)s OR ps.post_id IS NULL
       OR ps.heuristic_version <> %(version)s
       OR ps.reactions_count <> p.reactions_count
       OR ps.comments_count <> p.comments_count
       OR ps.reputation IS DISTINCT FROM coalesce(u.reputation, 0)::float8)
  AND (%(include_unscored)s OR ps.post_id IS NOT NULL)
ORDER BY p.id
LIMIT %(limit)s

-- rank_prefer_indexes --
For this transaction, reach feed entries through indexes: cost by audience, never a full scan.
SELECT set_config('enable_seqscan', 'off', true)

-- analyze_score_stage --
Give the planner the stage's size, so entries are found through the post index.
ANALYZE score_stage

-- rank_touched_create --
A session-private table of the entries a rank chunk changed (what the cached feeds need).
CREATE TEMP TABLE IF NOT EXISTS rank_touched (user_id bigint, post_id bigint, score float8)

-- rank_touched_clear --
Forget the previous chunk's changed entries.
TRUNCATE rank_touched

-- rank_update_entry_scores --
Copy the staged scores into every feed entry of those posts whose score differs; keep them. The entries are locked in (user_id, post_id) order first, the order every writer of feed_entry keeps (decision 0037).
WITH locked AS MATERIALIZED (
    SELECT fe.user_id, fe.post_id, st.score
    FROM feed_entry fe JOIN score_stage st ON st.post_id = fe.post_id
    WHERE fe.score IS DISTINCT FROM st.score
    ORDER BY fe.user_id, fe.post_id
    FOR UPDATE OF fe
), updated AS (
    UPDATE feed_entry fe SET score = l.score
    FROM locked l
    WHERE fe.user_id = l.user_id AND fe.post_id = l.post_id AND fe.score IS DISTINCT FROM l.score
    RETURNING fe.user_id, fe.post_id, fe.score
)
INSERT INTO rank_touched (user_id, post_id, score) SELECT user_id, post_id, score FROM updated

-- rank_touched_by_user --
The entries the last chunk changed, grouped by user (read after its commit).
SELECT user_id, post_id, score FROM rank_touched ORDER BY user_id

-- rank_entries_of_posts --
Feed entries of some posts, grouped by user (streamed to the cache writer).
SELECT user_id, post_id, score FROM feed_entry WHERE post_id = ANY(%(post_ids)s)
ORDER BY user_id

-- rank_scores_of_posts --
Current scores and communities of some live posts.
SELECT post_id, community_id, score FROM post_score WHERE post_id = ANY(%(post_ids)s)

-- rank_cache_pending_mark --
Remember that these posts' new scores still have to reach the cached feeds.
INSERT INTO rank_cache_pending (post_id)
SELECT id FROM unnest(%(post_ids)s::bigint[]) AS t(id)
ON CONFLICT (post_id) DO NOTHING

-- rank_cache_pending_page --
Posts whose cache writes a run may not have done, one page after a post id.
SELECT post_id FROM rank_cache_pending WHERE post_id > %(after)s ORDER BY post_id
LIMIT %(limit)s

-- rank_cache_pending_clear --
The cached feeds have these posts' scores.
DELETE FROM rank_cache_pending WHERE post_id = ANY(%(post_ids)s)

-- post_explain_inputs --
One post's scoring inputs and stored score, for rank explain.
SELECT p.id AS post_id, p.community_id, p.created_at, p.reactions_count, p.comments_count,
       coalesce(u.reputation, 0)::float8 AS reputation, p.deleted_at,
       ps.score AS stored_score, ps.heuristic_version
FROM posts p LEFT JOIN users u ON u.id = p.author_id LEFT JOIN post_score ps ON ps.post_id = p.id
WHERE p.id = %(post_id)s

-- backfill_unfinished --
The unfinished backfill, if any, locked until the end of the transaction.
SELECT id, heuristic_version, coefficients, shard_count, posts_done_at IS NOT NULL,
       communities_done_at IS NOT NULL, started_at, method
FROM rank_backfill WHERE state = 'unfinished'
FOR UPDATE

-- backfill_create --
Start a backfill towards a heuristic, in a number of shards.
INSERT INTO rank_backfill (heuristic_version, coefficients, shard_count, method)
VALUES (%(version)s, %(coefficients)s, %(shard_count)s, %(method)s)
RETURNING id

-- backfill_replace --
Abandon an unfinished backfill: a new one recomputes every score anyway.
UPDATE rank_backfill SET state = 'replaced', finished_at = now()
WHERE id = %(backfill_id)s AND state = 'unfinished'

-- backfill_state --
Where a backfill's post phase and community cache phase have got to.
SELECT state, posts_after, posts_done_at IS NOT NULL, communities_after,
       communities_done_at IS NOT NULL, method, posts_changed, posts_rescored
FROM rank_backfill WHERE id = %(backfill_id)s

-- backfill_shard_join --
Take part in a backfill as one shard (a no-op when the shard already has a row).
INSERT INTO rank_backfill_shard (backfill_id, shard) VALUES (%(backfill_id)s, %(shard)s)
ON CONFLICT (backfill_id, shard) DO NOTHING

-- backfill_shard_state --
Where one shard has got to.
SELECT users_after, cache_after, done_at IS NOT NULL, chunks, entries_updated
FROM rank_backfill_shard WHERE backfill_id = %(backfill_id)s AND shard = %(shard)s

-- backfill_shards_done --
How many shards of a backfill have finished.
SELECT count(*) FROM rank_backfill_shard WHERE backfill_id = %(backfill_id)s AND done_at IS NOT NULL

-- backfill_post_inputs --
The next chunk of scored live posts, with their scoring inputs, after a post id.
SELECT p.id AS post_id, p.community_id, p.created_at, p.reactions_count, p.comments_count,
       coalesce(u.reputation, 0)::float8 AS reputation
FROM post_score ps
JOIN posts p ON p.id = ps.post_id AND p.deleted_at IS NULL
LEFT JOIN users u ON u.id = p.author_id
WHERE ps.post_id > %(after)s
ORDER BY ps.post_id
LIMIT %(limit)s

-- backfill_count_posts --
How many posts have a stored score (the post phase's size), and how many are done.
SELECT count(*), count(*) FILTER (WHERE post_id <= %(after)s) FROM post_score

-- backfill_count_changed_posts --
How many of the staged posts get another score than the stored one.
SELECT count(*) FROM score_stage st JOIN post_score ps ON ps.post_id = st.post_id
WHERE ps.score IS DISTINCT FROM st.score

-- backfill_update_post_scores --
Store the staged scores and inputs of posts that still have a score (never resurrect one).
UPDATE post_score ps
SET score = st.score, reactions_count = st.reactions_count, comments_count = st.comments_count,
    reputation = st.reputation, heuristic_version = %(version)s, scored_at = now()
FROM score_stage st
WHERE ps.post_id = st.post_id

-- backfill_advance_posts --
Move the post phase's position, in the transaction of the scores it covers.
UPDATE rank_backfill
SET posts_after = %(after)s, posts_rescored = posts_rescored + %(rescored)s,
    posts_changed = posts_changed + %(changed)s
WHERE id = %(backfill_id)s AND state = 'unfinished'

-- backfill_posts_done --
Every stored score follows the backfill's heuristic; an 'auto' method becomes the one chosen.
UPDATE rank_backfill
SET posts_done_at = now(), method = CASE WHEN method = 'auto' THEN %(method)s ELSE method END
WHERE id = %(backfill_id)s AND state = 'unfinished' AND posts_done_at IS NULL

-- backfill_community_ids --
Community ids after one, one page (their cached feeds are rewritten).
SELECT id FROM communities WHERE id > %(after)s ORDER BY id LIMIT %(limit)s

-- backfill_advance_communities --
Cached community feeds are rewritten up to this community id.
UPDATE rank_backfill SET communities_after = %(after)s
WHERE id = %(backfill_id)s AND state = 'unfinished'

-- backfill_communities_done --
Every cached community feed is rewritten.
UPDATE rank_backfill SET communities_done_at = now()
WHERE id = %(backfill_id)s AND state = 'unfinished' AND communities_done_at IS NULL

-- backfill_shard_users --
The shard's next user ids after one (user_id % shard_count = shard), one chunk.
SELECT id FROM users
WHERE id > %(after)s
  AND (%(shard_count)s = 1
       OR (id %% %(shard_count)s + %(shard_count)s) %% %(shard_count)s = %(shard)s)
ORDER BY id LIMIT %(limit)s

-- backfill_shard_user_count --
How many users a shard covers (its entry phase's size), and how many are done.
SELECT count(*), count(*) FILTER (WHERE id <= %(after)s) FROM users
WHERE %(shard_count)s = 1
   OR (id %% %(shard_count)s + %(shard_count)s) %% %(shard_count)s = %(shard)s

-- backfill_users_between --
The shard's user ids in a range, one page (to redo cache writes a killed run missed).
SELECT id FROM users
WHERE id > %(after)s AND id <= %(upto)s
  AND (%(shard_count)s = 1
       OR (id %% %(shard_count)s + %(shard_count)s) %% %(shard_count)s = %(shard)s)
ORDER BY id LIMIT %(limit)s

-- backfill_sync_entries --
Give the feed entries of a range of the shard's users their posts' stored scores, locking them in (user_id, post_id) order first (decision 0037).
WITH locked AS MATERIALIZED (
    SELECT fe.user_id, fe.post_id, ps.score
    FROM feed_entry fe JOIN post_score ps ON ps.post_id = fe.post_id
    WHERE fe.user_id > %(after)s AND fe.user_id <= %(upto)s
      AND (%(shard_count)s = 1
           OR (fe.user_id %% %(shard_count)s + %(shard_count)s) %% %(shard_count)s = %(shard)s)
      AND fe.score IS DISTINCT FROM ps.score
    ORDER BY fe.user_id, fe.post_id
    FOR UPDATE OF fe
)
UPDATE feed_entry fe SET score = l.score
FROM locked l
WHERE fe.user_id = l.user_id AND fe.post_id = l.post_id AND fe.score IS DISTINCT FROM l.score

-- backfill_advance_shard --
Move a shard's position, in the transaction of the entries it covers.
UPDATE rank_backfill_shard sh
SET users_after = %(upto)s, entries_updated = entries_updated + %(updated)s,
    chunks = chunks + 1, updated_at = now()
FROM rank_backfill b
WHERE sh.backfill_id = %(backfill_id)s AND sh.shard = %(shard)s
  AND b.id = sh.backfill_id AND b.state = 'unfinished'

-- backfill_advance_shard_cache --
The shard's cached feeds are rewritten up to this user id.
UPDATE rank_backfill_shard SET cache_after = %(upto)s, updated_at = now()
WHERE backfill_id = %(backfill_id)s AND shard = %(shard)s

-- backfill_shard_done --
This shard's entries and cached feeds all follow the backfill's heuristic.
UPDATE rank_backfill_shard SET done_at = now(), updated_at = now()
WHERE backfill_id = %(backfill_id)s AND shard = %(shard)s AND done_at IS NULL

-- backfill_finish --
Close a backfill once its posts, community caches and every shard are done.
UPDATE rank_backfill b SET state = 'done', finished_at = now()
WHERE b.id = %(backfill_id)s AND b.state = 'unfinished' AND b.communities_done_at IS NOT NULL
  AND (SELECT count(*) FROM rank_backfill_shard sh
       WHERE sh.backfill_id = b.id AND sh.done_at IS NOT NULL) = b.shard_count

-- feed_partitions --
feed_entry's hash partitions in remainder order: name, modulus, remainder (none when unpartitioned).
SELECT c.relname::text, b.modulus, b.remainder
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL feedctl_feed_partition_bound(c.relname::text) b
WHERE i.inhparent = to_regclass('feed_entry')
ORDER BY b.remainder

-- backfill_partition_join --
Take a feed_entry partition into a swap backfill (a no-op when it has a row already).
INSERT INTO rank_backfill_partition (backfill_id, partition_name)
VALUES (%(backfill_id)s, %(partition)s)
ON CONFLICT (backfill_id, partition_name) DO NOTHING

-- backfill_partition_state --
Where one partition of a swap backfill has got to: swapped, cache position, done, rows.
SELECT swapped_at IS NOT NULL, cache_after, done_at IS NOT NULL, rows_written
FROM rank_backfill_partition
WHERE backfill_id = %(backfill_id)s AND partition_name = %(partition)s

-- swap_leftovers --
Partitions of feed_entry with a rewrite a killed or replaced run left unfinished (a logging trigger or a new table).
SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass('feed_entry')
  AND (EXISTS (SELECT 1 FROM pg_trigger t
               WHERE t.tgrelid = c.oid AND t.tgname = 'feedctl_swap_log')
       OR to_regclass(quote_ident(c.relname || '_swap')) IS NOT NULL)
ORDER BY 1

-- swap_abandon --
Drop an unfinished rewrite of a partition: its new table, trigger and log.
SELECT feedctl_swap_abandon(%(partition)s)

-- swap_prepare --
Log the keys written to a partition from now on (dropping any unfinished rewrite of it).
SELECT feedctl_swap_prepare(%(partition)s)

-- swap_build --
Rewrite a partition into a new table with its posts' stored scores, and index it.
SELECT feedctl_swap_build(%(partition)s)

-- swap_catch_up --
Replay into the new table the keys written to the partition since the rewrite began.
SELECT feedctl_swap_catch_up(%(partition)s)

-- swap_lock_timeout --
How long the swap waits for feed_entry's lock before giving up, for this transaction.
SELECT set_config('lock_timeout', %(timeout)s, true)

-- swap_finish --
Under feed_entry's lock: replay the last keys, swap the new table in for the partition.
SELECT feedctl_swap_finish(%(partition)s)

-- backfill_partition_swapped --
Record a partition's swap, in the transaction of the swap (only while the backfill is unfinished).
UPDATE rank_backfill_partition bp SET swapped_at = now(), rows_written = %(rows)s
FROM rank_backfill b
WHERE bp.backfill_id = %(backfill_id)s AND bp.partition_name = %(partition)s
  AND b.id = bp.backfill_id AND b.state = 'unfinished'

-- backfill_partition_users --
Users whose feed entries one hash partition holds, after a user id, one page.
SELECT id FROM users
WHERE id > %(after)s
  AND satisfies_hash_partition('feed_entry'::regclass, %(modulus)s, %(remainder)s, id)
ORDER BY id LIMIT %(limit)s

-- backfill_partition_cache --
A swapped partition's cached user feeds are rewritten up to this user id.
UPDATE rank_backfill_partition SET cache_after = %(upto)s
WHERE backfill_id = %(backfill_id)s AND partition_name = %(partition)s

-- backfill_partition_done --
A partition's entries and cached feeds all follow the backfill's heuristic.
UPDATE rank_backfill_partition SET done_at = now()
WHERE backfill_id = %(backfill_id)s AND partition_name = %(partition)s AND done_at IS NULL

-- preview_create --
A session-private table of the scores a heuristic would give (for a dry run).
CREATE TEMP TABLE IF NOT EXISTS rank_preview (post_id bigint PRIMARY KEY, score float8 NOT NULL)

-- preview_clear --
Empty the preview table.
DELETE FROM rank_preview

-- preview_copy --
Load preview scores.
COPY rank_preview (post_id, score) FROM STDIN (FORMAT csv)

-- preview_analyze --
Give the planner the preview table's size.
ANALYZE rank_preview

-- preview_changed_posts --
How many scored posts would get a different score.
SELECT count(*) FROM rank_preview pv JOIN post_score ps USING (post_id)
WHERE ps.score IS DISTINCT FROM pv.score

-- preview_count_entries --
Feed entries of a range of the shard's users, and how many would get a different score.
SELECT count(*), count(*) FILTER (WHERE fe.score IS DISTINCT FROM pv.score)
FROM feed_entry fe JOIN rank_preview pv ON pv.post_id = fe.post_id
WHERE fe.user_id > %(after)s AND fe.user_id <= %(upto)s
  AND (%(shard_count)s = 1
       OR (fe.user_id %% %(shard_count)s + %(shard_count)s) %% %(shard_count)s = %(shard)s)

-- preview_sample_users --
A deterministic sample of the shard's users whose feeds are not empty.
SELECT u.id FROM users u
WHERE (%(shard_count)s = 1
       OR (u.id %% %(shard_count)s + %(shard_count)s) %% %(shard_count)s = %(shard)s)
  AND EXISTS (SELECT 1 FROM feed_entry fe WHERE fe.user_id = u.id)
ORDER BY md5(u.id::text) LIMIT %(limit)s

-- preview_tops --
For each sampled user: the top post ids now, and under the previewed scores.
SELECT u.id,
       ARRAY(SELECT fe.post_id FROM feed_entry fe WHERE fe.user_id = u.id
             ORDER BY fe.score DESC, fe.post_id DESC LIMIT %(top)s),
       ARRAY(SELECT fe.post_id FROM feed_entry fe
             JOIN rank_preview pv ON pv.post_id = fe.post_id
             WHERE fe.user_id = u.id
             ORDER BY pv.score DESC, fe.post_id DESC LIMIT %(top)s)
FROM unnest(%(ids)s::bigint[]) AS u(id)
