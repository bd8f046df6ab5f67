-- feedctl: communities whose posts are pulled at read time instead of fanned out into
-- every member's feed (docs/decisions/0034). Fan-out adds a community the first time it
-- meets a post of it with more than `pull_threshold` members; it stays pulled.
-- A user's feed is then their feed_entry rows plus the retained live posts (post_score) of
-- the pulled communities they are a member of; readers merge the two.
CREATE TABLE feed_pull_community (
    community_id bigint PRIMARY KEY,
    members      bigint NOT NULL,  -- its member count when it switched
    since        timestamptz NOT NULL DEFAULT now()
);
