-- sitecast origin database, version 7: API tokens get roles, expiry and unique names; every
-- mutating REST call is recorded in the audit log.
--
-- role: 'admin' (everything), 'operator' (artifacts, images, sites, pushes; reads everything
-- but tokens and the audit log), 'viewer' (reads everything but tokens and the audit log).
-- Tokens made before this version were all-powerful, so they become 'admin'. expires is unix
-- seconds (NULL = never); last_used is updated at most once a minute.
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'
    CHECK (role IN ('admin', 'operator', 'viewer'));
ALTER TABLE api_tokens ADD COLUMN expires INTEGER;
ALTER TABLE api_tokens ADD COLUMN last_used INTEGER;
-- Names were not unique before: the older of two tokens of one name keeps it, later ones are
-- renamed <name>-<id> so each can be listed and revoked on its own.
UPDATE api_tokens SET name = name || '-' || id
 WHERE id NOT IN (SELECT MIN(id) FROM api_tokens GROUP BY name);
CREATE UNIQUE INDEX api_tokens_name ON api_tokens (name);

-- One row per mutating REST call (POST, PUT, PATCH, DELETE), refused ones included: token is
-- the caller's token name (NULL when it presented none or an invalid one), path includes the
-- query string, status the answer's HTTP status. Bodies are never recorded (passwords).
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    token       TEXT,
    role        TEXT,
    method      TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    remote      TEXT,
    user_agent  TEXT
);
CREATE INDEX audit_token ON audit (token, id);
