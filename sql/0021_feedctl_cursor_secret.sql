-- feedctl: the secret that signs this database's feed cursors, made at random here so that no
-- two installs share one (cursor_secret in the configuration overrides it). 96 hex digits from
-- three gen_random_uuid() calls: 366 bits from the server's strong random source.
CREATE TABLE feedctl_secret (
    name       text PRIMARY KEY,
    value      text NOT NULL CHECK (length(value) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO feedctl_secret (name, value)
SELECT 'cursor', replace(gen_random_uuid()::text || gen_random_uuid()::text
                         || gen_random_uuid()::text, '-', '');
