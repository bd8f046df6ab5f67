-- Pulled communities at read time (docs/decisions/0034).

-- pulled_communities_of_user --
The pulled communities a user is a member of, with a snapshot and the clock to pin a first page to.
SELECT pg_current_snapshot()::text, now(),
       coalesce((SELECT array_agg(m.community_id ORDER BY m.community_id)
                 FROM memberships m JOIN feed_pull_community pc ON pc.community_id = m.community_id
                 WHERE m.user_id = %(user_id)s), '{}')
