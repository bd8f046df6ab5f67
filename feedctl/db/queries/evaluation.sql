-- Offline evaluation of heuristics (rank evaluate, rank tune): candidates, features and
-- engagement as of past moments, read from post_engagements, never from today's counters.

-- evaluation_span --
The first and last engagement recorded.
SELECT min(created_at), max(created_at) FROM post_engagements

-- evaluation_sample_users --
A seeded sample of the users who engaged, in the window after a moment, with a post older than it.
SELECT user_id FROM (
    SELECT DISTINCT e.user_id
    FROM post_engagements e JOIN posts p ON p.id = e.post_id
    WHERE e.created_at >= %(moment)s AND e.created_at < %(window_end)s
      AND p.created_at < %(moment)s
) engaged
ORDER BY md5(user_id::text || ':' || %(seed)s::text), user_id
LIMIT %(users)s

-- evaluation_candidates --
What the users' feeds held at a moment: live posts of communities they had joined, younger than the retention.
SELECT m.user_id, p.id AS post_id, p.community_id, p.author_id, p.created_at,
       coalesce(u.reputation, 0)::float8 AS reputation
FROM memberships m
JOIN posts p ON p.community_id = m.community_id
LEFT JOIN users u ON u.id = p.author_id
WHERE m.user_id = ANY(%(users)s) AND m.joined_at <= %(moment)s
  AND p.created_at < %(moment)s AND p.created_at >= %(oldest)s
  AND (p.deleted_at IS NULL OR p.deleted_at > %(moment)s)

-- evaluation_counts_before --
Reactions and comments of posts counted from post_engagements before a moment.
SELECT post_id,
       count(*) FILTER (WHERE kind = 'reaction') AS reactions_count,
       count(*) FILTER (WHERE kind = 'comment') AS comments_count
FROM post_engagements
WHERE post_id = ANY(%(posts)s) AND created_at < %(moment)s AND kind IN ('reaction', 'comment')
GROUP BY post_id

-- evaluation_engagement_after --
Each user's strongest engagement with each post in a window (1 view, 2 reaction, 3 comment).
SELECT user_id, post_id,
       max(CASE kind WHEN 'comment' THEN 3 WHEN 'reaction' THEN 2 ELSE 1 END) AS gain
FROM post_engagements
WHERE user_id = ANY(%(users)s) AND created_at >= %(moment)s AND created_at < %(window_end)s
GROUP BY user_id, post_id
