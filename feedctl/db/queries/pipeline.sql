-- create_migration_history --
The record of applied migration files.
CREATE TABLE IF NOT EXISTS feedctl_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- try_advisory_lock --
Take a session-level advisory lock without waiting; true when taken.
SELECT pg_try_advisory_lock(%(key)s)

-- advisory_unlock --
Release a session-level advisory lock.
SELECT pg_advisory_unlock(%(key)s)

-- applied_migrations --
Every applied migration with its checksum.
SELECT name, checksum, applied_at FROM feedctl_migrations ORDER BY name

-- migration_settings --
What a migration may read with current_setting(), for this transaction only.
SELECT set_config('feedctl.feed_partitions', %(partitions)s, true)

-- record_migration --
Remember that a migration file was applied.
INSERT INTO feedctl_migrations (name, checksum) VALUES (%(name)s, %(checksum)s)

-- ensure_consumer --
Create a consumer's position at the start of the stream if it has none.
INSERT INTO feed_offset_state (consumer) VALUES (%(consumer)s) ON CONFLICT (consumer) DO NOTHING

-- consumer_position --
A consumer's committed position, locked for this transaction.
SELECT last_txid, last_event_id FROM feed_offset_state WHERE consumer = %(consumer)s FOR UPDATE

-- next_events --
Events past a position that no running transaction can still add to (txid below xmin).
SELECT id, kind, post_id, community_id, user_id, txid
FROM feed_events
WHERE (txid, id) > (%(txid)s::xid8, %(event_id)s::bigint)
  AND txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY txid, id
LIMIT %(limit)s

-- next_events_through --
Like next_events, but no further than a position (a shard catching up before a reshard).
SELECT id, kind, post_id, community_id, user_id, txid
FROM feed_events
WHERE (txid, id) > (%(txid)s::xid8, %(event_id)s::bigint)
  AND (txid, id) <= (%(until_txid)s::xid8, %(until_event_id)s::bigint)
  AND txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY txid, id
LIMIT %(limit)s

-- advance_consumer --
Move a consumer's position, in the same transaction as the rows it covers.
UPDATE feed_offset_state
SET last_txid = %(txid)s::xid8, last_event_id = %(event_id)s,
    events_processed = events_processed + %(events)s, updated_at = now()
WHERE consumer = %(consumer)s

-- consumer_lag --
How many events, and how old the oldest, a consumer has still to read.
SELECT count(*), extract(epoch FROM now() - min(e.created_at))::float8
FROM feed_events e, feed_offset_state s
WHERE s.consumer = %(consumer)s AND (e.txid, e.id) > (s.last_txid, s.last_event_id)

-- post_inputs --
The scoring inputs of live posts.
SELECT p.id AS post_id, p.community_id, p.created_at, p.reactions_count, p.comments_count,
       coalesce(u.reputation, 0)::float8 AS reputation
FROM posts p LEFT JOIN users u ON u.id = p.author_id
WHERE p.id = ANY(%(post_ids)s) AND p.deleted_at IS NULL

-- create_score_stage --
A temporary table that receives new scores by COPY.
CREATE TEMP TABLE IF NOT EXISTS score_stage (
    post_id bigint PRIMARY KEY, community_id bigint, score float8,
    reactions_count bigint, comments_count bigint, reputation float8
) ON COMMIT DELETE ROWS

-- copy_score_stage --
Load new scores into the stage.
COPY score_stage (post_id, community_id, score, reactions_count, comments_count, reputation) FROM STDIN (FORMAT csv)

-- upsert_post_scores --
Store the staged scores and their inputs, locking post_score rows in post order (decision 0037).
INSERT INTO post_score AS ps (post_id, community_id, score, reactions_count, comments_count,
                              reputation, heuristic_version, scored_at)
SELECT post_id, community_id, score, reactions_count, comments_count, reputation,
       %(version)s, now()
FROM score_stage
ORDER BY post_id
ON CONFLICT (post_id) DO UPDATE
SET score = excluded.score, reactions_count = excluded.reactions_count,
    comments_count = excluded.comments_count, reputation = excluded.reputation,
    heuristic_version = excluded.heuristic_version, scored_at = excluded.scored_at

-- update_entry_scores --
Copy the staged scores into every feed entry of those posts whose score differs, locking the entries in (user_id, post_id) order first (decision 0037).
WITH locked AS MATERIALIZED (
    SELECT fe.user_id, fe.post_id, st.score
    FROM feed_entry fe JOIN score_stage st ON st.post_id = fe.post_id
    WHERE fe.score IS DISTINCT FROM st.score
    ORDER BY fe.user_id, fe.post_id
    FOR UPDATE OF fe
)
UPDATE feed_entry fe SET score = l.score
FROM locked l
WHERE fe.user_id = l.user_id AND fe.post_id = l.post_id AND fe.score IS DISTINCT FROM l.score

-- fan_out_posts --
Write an entry for every member of each post's community (live, scored posts created since the retention cutoff only), of one fan-out shard (user_id mod shards = shard; 0 of 1 is everyone).
INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at)
SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, p.created_at
FROM posts p
JOIN post_score ps ON ps.post_id = p.id
JOIN memberships m ON m.community_id = p.community_id
WHERE p.id = ANY(%(post_ids)s) AND p.deleted_at IS NULL
  AND p.created_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND (m.user_id %% %(shards)s + %(shards)s) %% %(shards)s = %(shard)s
  AND NOT EXISTS (SELECT 1 FROM feed_pull_community pc WHERE pc.community_id = p.community_id)
ORDER BY m.user_id, p.id
ON CONFLICT (user_id, post_id) DO NOTHING

-- fan_out_new_posts --
Entries for posts never fanned out before: none can exist, so no conflict check (30% faster); one shard's members.
INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at)
SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, p.created_at
FROM posts p
JOIN post_score ps ON ps.post_id = p.id
JOIN memberships m ON m.community_id = p.community_id
WHERE p.id = ANY(%(post_ids)s) AND p.deleted_at IS NULL
  AND p.created_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND (m.user_id %% %(shards)s + %(shards)s) %% %(shards)s = %(shard)s
  AND NOT EXISTS (SELECT 1 FROM feed_pull_community pc WHERE pc.community_id = p.community_id)
ORDER BY m.user_id, p.id

-- scored_post_ids --
Which of these posts already have a score (were fanned out or ranked before).
SELECT post_id FROM post_score WHERE post_id = ANY(%(post_ids)s)

-- raise_work_mem --
Give the fan-out's sort room in memory for the rest of this transaction.
SET LOCAL work_mem = '256MB'

-- delete_post_entries --
Remove deleted posts from the feeds of one fan-out shard's users (0 of 1: every feed) and from the community ranking (their rows are locked first: fanout_lock_entries).
WITH gone AS (DELETE FROM feed_entry
              WHERE post_id = ANY(%(post_ids)s)
                AND (user_id %% %(shards)s + %(shards)s) %% %(shards)s = %(shard)s
              RETURNING 1),
     unscored AS (DELETE FROM post_score WHERE post_id = ANY(%(post_ids)s) RETURNING 1)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM unscored)

-- fanout_lock_post_scores --
Lock the post_score rows a fan-out batch may change, in post order, before any feed entry (decision 0037).
SELECT post_id FROM post_score WHERE post_id = ANY(%(post_ids)s) ORDER BY post_id FOR UPDATE

-- fanout_lock_entries --
Lock, in (user_id, post_id) order, every existing feed entry a fan-out batch may delete or meet on insert: its posts' entries in its shard's feeds (0 of 1: every feed) and its joining or leaving members' entries of those communities (decision 0037).
SELECT count(*) FROM (
    SELECT 1 FROM feed_entry fe
    WHERE (fe.user_id, fe.post_id) IN (
        SELECT e.user_id, e.post_id FROM feed_entry e
        WHERE e.post_id = ANY(%(post_ids)s)
          AND (e.user_id %% %(shards)s + %(shards)s) %% %(shards)s = %(shard)s
        UNION ALL
        SELECT e.user_id, e.post_id
        FROM unnest(%(user_ids)s::bigint[], %(community_ids)s::bigint[]) AS t(user_id, community_id)
        JOIN feed_entry e ON e.user_id = t.user_id AND e.community_id = t.community_id
    )
    ORDER BY fe.user_id, fe.post_id
    FOR UPDATE OF fe
) locked

-- merge_community_into_feed --
A member who joined gets the community's whole retained feed: every live scored post created since the cutoff (none from a pulled community: reads merge those).
INSERT INTO feed_entry (user_id, post_id, community_id, author_id, score, created_at)
SELECT m.user_id, p.id, p.community_id, p.author_id, ps.score, p.created_at
FROM memberships m
JOIN post_score ps ON ps.community_id = m.community_id
JOIN posts p ON p.id = ps.post_id AND p.deleted_at IS NULL
WHERE m.community_id = %(community_id)s AND m.user_id = %(user_id)s
  AND p.created_at >= coalesce(%(since)s::timestamptz, '-infinity')
  AND NOT EXISTS (SELECT 1 FROM feed_pull_community pc WHERE pc.community_id = m.community_id)
ON CONFLICT (user_id, post_id) DO NOTHING

-- remove_community_from_feed --
A member who left loses that community's posts (unless they are a member again).
DELETE FROM feed_entry fe
WHERE fe.user_id = %(user_id)s AND fe.community_id = %(community_id)s
  AND NOT EXISTS (SELECT 1 FROM memberships m
                  WHERE m.community_id = %(community_id)s AND m.user_id = %(user_id)s)

-- post_scores --
Current scores and communities of live posts created since the retention cutoff.
SELECT ps.post_id, ps.community_id, ps.score
FROM post_score ps JOIN posts p ON p.id = ps.post_id
WHERE ps.post_id = ANY(%(post_ids)s) AND p.deleted_at IS NULL
  AND p.created_at >= coalesce(%(since)s::timestamptz, '-infinity')

-- mark_for_repair --
Remember that these feeds' caches missed a write.
INSERT INTO feed_repair (feed_kind, feed_id, reason)
SELECT %(kind)s, id, %(reason)s FROM unnest(%(ids)s::bigint[]) AS t(id)
ON CONFLICT (feed_kind, feed_id) DO UPDATE SET reason = excluded.reason, marked_at = now()

-- feeds_to_repair --
Feeds marked for repair, oldest first.
SELECT feed_kind, feed_id FROM feed_repair ORDER BY marked_at, feed_kind, feed_id LIMIT %(limit)s

-- unmark_repaired --
Forget repair marks that are no newer than the repair that healed them.
DELETE FROM feed_repair
WHERE feed_kind = %(kind)s AND feed_id = ANY(%(ids)s) AND marked_at <= %(before)s

-- count_repairs --
How many feeds are marked for repair.
SELECT count(*) FROM feed_repair

-- user_feed_tops --
The best cap+1 retained entries of each of several user feeds.
SELECT u.id, top.post_id, top.score
FROM unnest(%(ids)s::bigint[]) AS u(id)
CROSS JOIN LATERAL (
    SELECT post_id, score FROM feed_entry
    WHERE user_id = u.id AND created_at >= coalesce(now() - %(retention)s::interval, '-infinity')
    ORDER BY score DESC, post_id DESC LIMIT %(limit)s
) top

-- community_feed_tops --
The best cap+1 live retained posts of each of several communities.
SELECT c.id, top.post_id, top.score
FROM unnest(%(ids)s::bigint[]) AS c(id)
CROSS JOIN LATERAL (
    SELECT ps.post_id, ps.score FROM post_score ps
    WHERE ps.community_id = c.id
      AND EXISTS (SELECT 1 FROM posts p WHERE p.id = ps.post_id
                  AND p.created_at >= coalesce(now() - %(retention)s::interval, '-infinity'))
    ORDER BY ps.score DESC, ps.post_id DESC LIMIT %(limit)s
) top

-- active_user_ids --
Users active since a time, in id order, one page after an id.
SELECT id FROM users
WHERE last_active_at >= %(since)s AND id > %(after)s ORDER BY id LIMIT %(limit)s

-- user_ids_after --
All users in id order, one page after an id.
SELECT id FROM users WHERE id > %(after)s ORDER BY id LIMIT %(limit)s

-- member_ids_page --
Members of one community in user order, one page after a user id.
SELECT user_id FROM memberships
WHERE community_id = %(community_id)s AND user_id > %(after)s
ORDER BY user_id LIMIT %(limit)s

-- existing_user_ids --
Which of these user ids exist.
SELECT id FROM users WHERE id = ANY(%(ids)s)

-- user_exists --
Whether a user exists.
SELECT EXISTS (SELECT 1 FROM users WHERE id = %(id)s)

-- community_exists --
Whether a community exists.
SELECT EXISTS (SELECT 1 FROM communities WHERE id = %(id)s)

-- database_now --
The server's clock, outside any transaction's start time.
SELECT clock_timestamp()

-- try_named_lock --
Take a session-level advisory lock named by text, without waiting.
SELECT pg_try_advisory_lock(hashtext(%(name)s))

-- named_unlock --
Release a session-level advisory lock named by text.
SELECT pg_advisory_unlock(hashtext(%(name)s))

-- count_posts --
How many posts exist.
SELECT count(*) FROM posts

-- busiest_active_user --
An active user with the largest feed, to show in the demo.
SELECT fe.user_id FROM feed_entry fe JOIN users u ON u.id = fe.user_id
WHERE u.last_active_at >= %(since)s
GROUP BY fe.user_id ORDER BY count(*) DESC, fe.user_id LIMIT 1

-- cache_pending_range --
The stream range whose cache writes may be missing, if any, and the consumer's position.
SELECT cache_from_txid, cache_from_event_id, last_txid, last_event_id
FROM feed_offset_state WHERE consumer = %(consumer)s AND cache_from_txid IS NOT NULL

-- open_cache_pending --
Remember, with the batch, where the cache writes not yet done begin (kept if already set).
UPDATE feed_offset_state
SET cache_from_txid = coalesce(cache_from_txid, %(txid)s::xid8),
    cache_from_event_id = coalesce(cache_from_event_id, %(event_id)s)
WHERE consumer = %(consumer)s

-- close_cache_pending --
The cache has every write of the committed batches.
UPDATE feed_offset_state SET cache_from_txid = NULL, cache_from_event_id = NULL
WHERE consumer = %(consumer)s

-- events_in_range --
Events after one position and up to another, in stream order, one page.
SELECT id, kind, post_id, community_id, user_id, txid
FROM feed_events
WHERE (txid, id) > (%(txid)s::xid8, %(event_id)s::bigint)
  AND (txid, id) <= (%(last_txid)s::xid8, %(last_event_id)s::bigint)
ORDER BY txid, id
LIMIT %(limit)s

-- active_among --
Which of these users were active since a time.
SELECT id FROM users WHERE id = ANY(%(ids)s) AND last_active_at >= %(since)s

-- community_sizes --
How many members each of these communities has (pulled ones are left out: they are not counted again).
SELECT community_id, count(*) FROM memberships m
WHERE community_id = ANY(%(ids)s)
  AND NOT EXISTS (SELECT 1 FROM feed_pull_community pc WHERE pc.community_id = m.community_id)
GROUP BY community_id

-- close_cache_pending_through --
The cache has every write up to this position: clear the range unless a newer batch committed.
UPDATE feed_offset_state SET cache_from_txid = NULL, cache_from_event_id = NULL
WHERE consumer = %(consumer)s AND last_txid = %(txid)s::xid8 AND last_event_id = %(event_id)s

-- cursor_secret --
The random secret `migrate up` made for signing this database's cursors.
SELECT value FROM feedctl_secret WHERE name = 'cursor'

-- retention_cutoff --
The oldest creation time a feed keeps now (NULL: retention is off and feeds keep everything).
SELECT now() - %(retention)s::interval

-- retention_position --
How far `feedctl expire` got, and under which retention.
SELECT retention_seconds, last_created_at, last_post_id FROM feed_retention_state
WHERE name = %(name)s

-- expired_posts_count --
How many posts past a position were created before the cutoff.
SELECT count(*) FROM posts
WHERE (created_at, id) > (%(after_created_at)s::timestamptz, %(after_post_id)s::bigint)
  AND created_at < %(cutoff)s

-- expired_posts_page --
The next posts, in (created_at, id) order after a position, created before the cutoff.
SELECT id, community_id, created_at FROM posts
WHERE (created_at, id) > (%(after_created_at)s::timestamptz, %(after_post_id)s::bigint)
  AND created_at < %(cutoff)s
ORDER BY created_at, id
LIMIT %(limit)s

-- count_post_entries --
How many feed entries these posts have.
SELECT count(*) FROM feed_entry WHERE post_id = ANY(%(post_ids)s)

-- delete_post_feed_entries --
Remove these posts from every user's feed (their scores stay: community feeds filter by age), locking the entries in (user_id, post_id) order first (decision 0037).
WITH locked AS MATERIALIZED (
    SELECT user_id, post_id FROM feed_entry WHERE post_id = ANY(%(post_ids)s)
    ORDER BY user_id, post_id
    FOR UPDATE
)
DELETE FROM feed_entry fe USING locked l
WHERE fe.user_id = l.user_id AND fe.post_id = l.post_id

-- advance_retention --
Record how far `feedctl expire` got, in the transaction that removed the entries.
INSERT INTO feed_retention_state AS s
    (name, retention_seconds, last_created_at, last_post_id, entries_removed)
VALUES (%(name)s, %(retention_seconds)s, %(created_at)s, %(post_id)s, %(removed)s)
ON CONFLICT (name) DO UPDATE
SET retention_seconds = excluded.retention_seconds, last_created_at = excluded.last_created_at,
    last_post_id = excluded.last_post_id,
    entries_removed = s.entries_removed + excluded.entries_removed, updated_at = now()

-- insert_new_post_scores --
Store staged scores of posts that have none yet; a score another fan-out shard stored first is kept, so every shard's entries carry the same score.
INSERT INTO post_score (post_id, community_id, score, reactions_count, comments_count,
                        reputation, heuristic_version, scored_at)
SELECT post_id, community_id, score, reactions_count, comments_count, reputation,
       %(version)s, now()
FROM score_stage
ORDER BY post_id
ON CONFLICT (post_id) DO NOTHING

-- fanout_layout --
How many shards a fan-out consumer runs as (1 when it has no layout row).
SELECT coalesce((SELECT shard_count FROM feed_fanout_layout WHERE consumer = %(consumer)s), 1)

-- set_fanout_layout --
Record how many shards a fan-out consumer runs as.
INSERT INTO feed_fanout_layout (consumer, shard_count) VALUES (%(consumer)s, %(shards)s)
ON CONFLICT (consumer) DO UPDATE SET shard_count = excluded.shard_count, changed_at = now()

-- fanout_positions --
The positions (and pending cache ranges) of these consumers, by name.
SELECT consumer, last_txid, last_event_id, cache_from_txid IS NOT NULL, events_processed
FROM feed_offset_state WHERE consumer = ANY(%(consumers)s) ORDER BY consumer

-- drop_consumers --
Forget these consumers' positions (a reshard replaces them).
DELETE FROM feed_offset_state WHERE consumer = ANY(%(consumers)s)

-- place_consumer --
Create or move a consumer's position to a given point, with no cache writes pending.
INSERT INTO feed_offset_state AS s (consumer, last_txid, last_event_id, events_processed)
VALUES (%(consumer)s, %(txid)s::xid8, %(event_id)s, %(events)s)
ON CONFLICT (consumer) DO UPDATE
SET last_txid = excluded.last_txid, last_event_id = excluded.last_event_id,
    events_processed = excluded.events_processed, cache_from_txid = NULL,
    cache_from_event_id = NULL, updated_at = now()

-- pull_new_communities --
Switch communities with more members than the threshold to pull (posts not written into members' feeds); returns every pulled one among these.
WITH sized AS (
    SELECT m.community_id, count(*) AS members FROM memberships m
    WHERE m.community_id = ANY(%(ids)s)
      AND NOT EXISTS (SELECT 1 FROM feed_pull_community p WHERE p.community_id = m.community_id)
    GROUP BY m.community_id HAVING count(*) > %(threshold)s
),
added AS (
    INSERT INTO feed_pull_community (community_id, members)
    SELECT community_id, members FROM sized ORDER BY community_id
    ON CONFLICT (community_id) DO NOTHING
    RETURNING community_id
)
SELECT community_id FROM added
UNION
SELECT community_id FROM feed_pull_community WHERE community_id = ANY(%(ids)s)

-- pulled_among --
Which of these communities are pulled (their posts are read from the community, not fanned out).
SELECT community_id FROM feed_pull_community WHERE community_id = ANY(%(ids)s)

-- user_entries_of --
The current retained entries of some users' feeds among some posts, after one row that holds only the snapshot they were read at: what a fenced cache write brings those entries to (an entry not returned is not in the feed).
SELECT pg_current_snapshot()::text, NULL::bigint, NULL::bigint, NULL::float8
UNION ALL
SELECT NULL, user_id, post_id, score
FROM feed_entry
WHERE user_id = ANY(%(feed_ids)s::bigint[]) AND post_id = ANY(%(post_ids)s::bigint[])
  AND created_at >= coalesce(now() - %(retention)s::interval, '-infinity')

-- community_entries_of --
The current retained entries of some communities' feeds among some posts, after one row that holds only the snapshot they were read at: what a fenced cache write brings those entries to (an entry not returned is not in the feed).
SELECT pg_current_snapshot()::text, NULL::bigint, NULL::bigint, NULL::float8
UNION ALL
SELECT NULL, ps.community_id, ps.post_id, ps.score
FROM post_score ps JOIN posts p ON p.id = ps.post_id
WHERE ps.community_id = ANY(%(feed_ids)s::bigint[]) AND ps.post_id = ANY(%(post_ids)s::bigint[])
  AND p.created_at >= coalesce(now() - %(retention)s::interval, '-infinity')
