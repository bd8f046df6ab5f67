-- App contract: groups that members join and post into.
CREATE TABLE communities (
    id   bigint PRIMARY KEY,
    name text NOT NULL
);
