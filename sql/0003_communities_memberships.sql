-- App contract: who sees a community's posts in their feed.
CREATE TABLE memberships (
    community_id bigint NOT NULL,
    user_id      bigint NOT NULL,
    joined_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, user_id)
);
CREATE INDEX memberships_user_id_idx ON memberships (user_id);
