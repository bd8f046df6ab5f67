-- feedctl: one row per `feedctl jobs run`: where and when it ran, how it ended, what it did.
-- backend_pid is the PostgreSQL session holding the job's advisory lock while it runs, so a
-- second run can say which run holds the lock, and a row left 'running' by a process that
-- died can be told from a live one.
CREATE TABLE job_run (
    id          bigserial PRIMARY KEY,
    job         text NOT NULL,
    command     text NOT NULL,
    lock_name   text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    backend_pid integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome     text NOT NULL DEFAULT 'running' CHECK (outcome IN (
        'running', 'succeeded', 'partial', 'failed', 'timed_out', 'stopped', 'locked', 'abandoned'
    )),
    exit_code   integer,
    counts      jsonb NOT NULL DEFAULT '{}',
    message     text
);
CREATE INDEX job_run_job_started_idx ON job_run (job, started_at);
