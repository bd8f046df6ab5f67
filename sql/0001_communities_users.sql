-- App contract: the people who read feeds and write posts.
CREATE TABLE users (
    id             bigint PRIMARY KEY,
    reputation     double precision NOT NULL DEFAULT 0,
    last_active_at timestamptz
);
CREATE INDEX users_last_active_at_idx ON users (last_active_at);
