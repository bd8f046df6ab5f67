-- feedctl: the score every post had before each change, so that a reader can keep a walk
-- through a feed in the order of the scores its first page saw (docs/decisions/0015).
-- Written by a trigger, so every job that changes post_score.score records it.
CREATE TABLE post_score_change (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    post_id    bigint NOT NULL,
    old_score  double precision NOT NULL,
    txid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX post_score_change_txid_idx ON post_score_change (txid);
CREATE INDEX post_score_change_changed_at_idx ON post_score_change (changed_at);

CREATE FUNCTION feedctl_record_post_score_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO post_score_change (post_id, old_score)
    SELECT o.post_id, o.score
    FROM feedctl_old_scores o JOIN feedctl_new_scores n ON n.post_id = o.post_id
    WHERE o.score IS DISTINCT FROM n.score
    ORDER BY o.post_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER post_score_change_record
AFTER UPDATE ON post_score
REFERENCING OLD TABLE AS feedctl_old_scores NEW TABLE AS feedctl_new_scores
FOR EACH STATEMENT EXECUTE FUNCTION feedctl_record_post_score_changes();
