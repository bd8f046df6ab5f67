-- feedctl: feeds keep posts younger than feed_retention. `feedctl expire` walks posts in
-- (created_at, id) order up to the cutoff and removes their feed entries in bounded chunks;
-- feed_retention_state remembers how far it got, and with which retention.
CREATE INDEX posts_created_id_idx ON posts (created_at, id);

CREATE TABLE feed_retention_state (
    name              text PRIMARY KEY,
    retention_seconds bigint NOT NULL,
    last_created_at   timestamptz NOT NULL,
    last_post_id      bigint NOT NULL,
    entries_removed   bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
