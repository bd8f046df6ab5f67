-- App contract: posts with the counters the app maintains.
CREATE TABLE posts (
    id              bigint PRIMARY KEY,
    community_id    bigint NOT NULL,
    author_id       bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    reactions_count bigint NOT NULL DEFAULT 0,
    comments_count  bigint NOT NULL DEFAULT 0,
    deleted_at      timestamptz
);
CREATE INDEX posts_community_created_idx ON posts (community_id, created_at DESC);
