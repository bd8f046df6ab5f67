-- start_job_run --
Record that a job run has started, held by this session; returns its id.
INSERT INTO job_run (job, command, lock_name, host, pid, backend_pid)
VALUES (%(job)s, %(command)s, %(lock_name)s, %(host)s, %(pid)s, pg_backend_pid())
RETURNING id, started_at

-- abandon_job_runs --
Close the runs of a job left 'running' by processes that died (their lock is free now).
UPDATE job_run
SET outcome = 'abandoned', finished_at = clock_timestamp(),
    message = 'the process ended without recording an outcome (killed, or its machine stopped)'
WHERE job = %(job)s AND finished_at IS NULL AND id <> %(run_id)s

-- finish_job_run --
Record how a job run ended.
UPDATE job_run
SET finished_at = clock_timestamp(), outcome = %(outcome)s, exit_code = %(exit_code)s,
    counts = %(counts)s, message = %(message)s
WHERE id = %(run_id)s

-- job_failures_in_a_row --
How many finished runs of a job failed since its last success (or ever).
SELECT count(*) FROM job_run
WHERE job = %(job)s
  AND outcome IN ('failed', 'timed_out', 'stopped', 'abandoned')
  AND started_at > coalesce(
      (SELECT max(started_at) FROM job_run
       WHERE job = %(job)s AND outcome IN ('succeeded', 'partial')),
      '-infinity')

-- prune_job_runs --
Forget a job's runs older than the retention period.
DELETE FROM job_run WHERE job = %(job)s AND started_at < now() - %(keep)s::interval

-- set_application_name --
Name this session in pg_stat_activity.
SELECT set_config('application_name', %(name)s, false)

-- advisory_lock_holder --
Who holds a text-named advisory lock: the session, and the job run it recorded, if any.
SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start,
       r.id, r.job, r.host, r.pid, r.started_at
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN LATERAL (
    SELECT id, job, host, pid, started_at FROM job_run
    WHERE backend_pid = l.pid AND finished_at IS NULL
    ORDER BY started_at DESC LIMIT 1
) r ON true
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = (hashtext(%(name)s)::bigint >> 32) & 4294967295
  AND l.objid::bigint = hashtext(%(name)s)::bigint & 4294967295
LIMIT 1

-- latest_job_runs --
The latest run of each named job (and whether a 'running' one holds its lock), and its last success.
SELECT j.name, last.id, last.started_at, last.finished_at, last.outcome, last.exit_code,
       last.message, last.host, last.pid,
       last.finished_at IS NULL AND EXISTS (
           SELECT 1 FROM pg_locks l
           WHERE l.pid = last.backend_pid AND l.locktype = 'advisory' AND l.granted
             AND l.objsubid = 1
             AND l.classid::bigint = (hashtext(last.lock_name)::bigint >> 32) & 4294967295
             AND l.objid::bigint = hashtext(last.lock_name)::bigint & 4294967295
       ) AS alive,
       ok.finished_at
FROM unnest(%(names)s::text[]) AS j(name)
LEFT JOIN LATERAL (
    SELECT * FROM job_run WHERE job = j.name ORDER BY started_at DESC LIMIT 1
) last ON true
LEFT JOIN LATERAL (
    SELECT finished_at FROM job_run
    WHERE job = j.name AND outcome IN ('succeeded', 'partial')
    ORDER BY started_at DESC LIMIT 1
) ok ON true
ORDER BY j.name

-- consumer_lags --
Each consumer's events still to read, the oldest one's age in seconds, and when its position moved (a sharded consumer shows one row per shard).
SELECT s.consumer, count(e.id), extract(epoch FROM now() - min(e.created_at))::float8,
       s.updated_at
FROM (
    SELECT consumer, last_txid, last_event_id, updated_at FROM feed_offset_state
    UNION ALL
    SELECT %(default)s, '0'::xid8, 0, NULL
    WHERE NOT EXISTS (SELECT 1 FROM feed_offset_state WHERE consumer = %(default)s)
      AND NOT EXISTS (SELECT 1 FROM feed_fanout_layout WHERE consumer = %(default)s)
) s
LEFT JOIN feed_events e ON (e.txid, e.id) > (s.last_txid, s.last_event_id)
GROUP BY s.consumer, s.updated_at
ORDER BY s.consumer

-- repair_backlog --
How many feeds are marked for repair, and the age in seconds of the oldest mark.
SELECT count(*), extract(epoch FROM now() - min(marked_at))::float8 FROM feed_repair

-- count_active_users --
How many users were active since a time.
SELECT count(*) FROM users WHERE last_active_at >= %(since)s

-- sample_active_users --
A uniform random sample of the users active since a time.
SELECT id FROM users WHERE last_active_at >= %(since)s ORDER BY random() LIMIT %(limit)s

-- ping --
Whether PostgreSQL answers (readiness of `feedctl serve`).
SELECT 1
