-- sitecast origin database, version 4: who may use the origin's registry besides API tokens.
-- A grant gives a user pull (and with push = 1 also push and delete) on every repository whose
-- name matches pattern ('*' and '?' globs: 'docker.io/library/*').
CREATE TABLE registry_grants (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user     TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    pattern  TEXT    NOT NULL,
    push     INTEGER NOT NULL,
    created  INTEGER NOT NULL
);
CREATE INDEX registry_grants_user ON registry_grants (user);
