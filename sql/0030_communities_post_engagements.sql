-- App contract: who engaged with which post, and when. The app appends a row per reaction,
-- comment and (where it records them) view. `feedctl rank evaluate` and `rank tune` read it
-- to rebuild features as of a past moment (reactions and comments before it) and to score
-- rankings against the engagement that followed; nothing else in feedctl reads it.
CREATE TABLE post_engagements (
    user_id    bigint NOT NULL,
    post_id    bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('reaction', 'comment', 'view')),
    created_at timestamptz NOT NULL
);
-- Features: a post's engagement before a moment. Labels: a user's engagement in a window.
CREATE INDEX post_engagements_post_created_idx ON post_engagements (post_id, created_at);
CREATE INDEX post_engagements_user_created_idx ON post_engagements (user_id, created_at);
