-- feedctl: one row per post in a user's feed. score is the time-invariant rank key.
CREATE TABLE feed_entry (
    user_id      bigint NOT NULL,
    post_id      bigint NOT NULL,
    community_id bigint NOT NULL,
    author_id    bigint NOT NULL,
    score        double precision NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, post_id)
);
CREATE INDEX feed_entry_rank_idx ON feed_entry (user_id, score DESC, post_id DESC);
CREATE INDEX feed_entry_post_idx ON feed_entry (post_id);

-- The rank key of every live post and the inputs it was computed from, so that a
-- rank run can find the posts whose inputs changed. Also serves community feeds.
CREATE TABLE post_score (
    post_id           bigint PRIMARY KEY,
    community_id      bigint NOT NULL,
    score             double precision NOT NULL,
    reactions_count   bigint NOT NULL,
    comments_count    bigint NOT NULL,
    reputation        double precision NOT NULL,
    heuristic_version text NOT NULL,
    scored_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX post_score_community_rank_idx ON post_score (community_id, score DESC, post_id DESC);
