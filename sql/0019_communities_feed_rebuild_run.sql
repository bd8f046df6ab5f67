-- feedctl: where a `rebuild --all` has got to, so that `--resume` continues after the last
-- chunk whose PostgreSQL rows and cached copies were both written.
CREATE TABLE feed_rebuild_run (
    name          text PRIMARY KEY,
    cap           integer NOT NULL,
    last_user_id  bigint NOT NULL DEFAULT 0,
    users_done    bigint NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
