-- sitecast origin database, version 1.
-- Times are seconds since the Unix epoch. Ids and digests are 32-byte BLOBs.
-- Encoded records (recipes) are postcard with a leading version byte.

-- Sites: labels are a JSON object of strings. join_token_hash is the SHA-256 of the unused join
-- token's secret (NULL once consumed). desired_revision / config_revision increase whenever the
-- site's desired state / site config changes; edges compare them with what they hold.
CREATE TABLE sites (
    name              TEXT    PRIMARY KEY,
    labels            TEXT    NOT NULL DEFAULT '{}',
    max_rate          INTEGER,
    join_token_hash   BLOB,
    created           INTEGER NOT NULL,
    desired_revision  INTEGER NOT NULL DEFAULT 1,
    config_revision   INTEGER NOT NULL DEFAULT 1,
    sent_payload      INTEGER NOT NULL DEFAULT 0,
    sent_framing      INTEGER NOT NULL DEFAULT 0
);

-- Enrolled nodes, recognised by the SHA-256 of their certificate DER.
CREATE TABLE nodes (
    site         TEXT    NOT NULL REFERENCES sites (name) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    cert_sha256  BLOB    NOT NULL UNIQUE,
    enrolled     INTEGER NOT NULL,
    last_seen    INTEGER,
    address      TEXT,
    online       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site, name)
);

-- Blobs and their recipes (version byte + postcard BlobRecipe).
CREATE TABLE blobs (
    blake3   BLOB    PRIMARY KEY,
    len      INTEGER NOT NULL,
    sha256   BLOB    NOT NULL,
    chunks   INTEGER NOT NULL,
    recipe   BLOB    NOT NULL
);

-- Which chunks each blob uses (for garbage collection).
CREATE TABLE chunk_refs (
    chunk  BLOB NOT NULL,
    blob   BLOB NOT NULL REFERENCES blobs (blake3) ON DELETE CASCADE,
    PRIMARY KEY (chunk, blob)
) WITHOUT ROWID;
CREATE INDEX chunk_refs_blob ON chunk_refs (blob);

-- Published artifacts: a path bound to a blob.
CREATE TABLE artifacts (
    path      TEXT    PRIMARY KEY,
    blob      BLOB    NOT NULL REFERENCES blobs (blake3),
    modified  INTEGER NOT NULL
);
CREATE INDEX artifacts_blob ON artifacts (blob);

-- Users: argon2id PHC hash, ssh_keys a JSON array of OpenSSH public keys.
CREATE TABLE users (
    name           TEXT    PRIMARY KEY,
    password_hash  TEXT,
    ssh_keys       TEXT    NOT NULL DEFAULT '[]',
    created        INTEGER NOT NULL
);

-- Grants: user NULL = anonymous. Site selector: site (one site), labels (JSON object, every
-- label must match), or both NULL = all sites.
CREATE TABLE grants (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user     TEXT    REFERENCES users (name) ON DELETE CASCADE,
    prefix   TEXT    NOT NULL,
    site     TEXT    REFERENCES sites (name) ON DELETE CASCADE,
    labels   TEXT,
    read     INTEGER NOT NULL,
    list     INTEGER NOT NULL,
    created  INTEGER NOT NULL
);

-- API bearer tokens, by SHA-256 of the token.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    token_hash  BLOB    NOT NULL UNIQUE,
    created     INTEGER NOT NULL
);

-- Pushes: content is the JSON array of selectors as requested; the artifacts they resolved to
-- at creation are in push_artifacts (removed = 1 once the artifact was deleted).
CREATE TABLE pushes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    created   INTEGER NOT NULL,
    content   TEXT    NOT NULL,
    max_rate  INTEGER
);

CREATE TABLE push_artifacts (
    push      INTEGER NOT NULL REFERENCES pushes (id) ON DELETE CASCADE,
    path      TEXT    NOT NULL,
    blob      BLOB    NOT NULL,
    len       INTEGER NOT NULL,
    sha256    BLOB    NOT NULL,
    modified  INTEGER NOT NULL,
    removed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (push, path)
);
CREATE INDEX push_artifacts_blob ON push_artifacts (blob);
CREATE INDEX push_artifacts_path ON push_artifacts (path);

-- Per push and site: state and counters.
CREATE TABLE push_sites (
    push           INTEGER NOT NULL REFERENCES pushes (id) ON DELETE CASCADE,
    site           TEXT    NOT NULL REFERENCES sites (name) ON DELETE CASCADE,
    state          TEXT    NOT NULL CHECK (state IN ('pending', 'transferring', 'complete', 'failed')),
    bytes_total    INTEGER NOT NULL,
    bytes_needed   INTEGER NOT NULL DEFAULT 0,
    payload_bytes  INTEGER NOT NULL DEFAULT 0,
    framing_bytes  INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    updated        INTEGER NOT NULL,
    PRIMARY KEY (push, site)
);
CREATE INDEX push_sites_site ON push_sites (site);

-- Per push, site and artifact: the edge's last report. 'superseded' = a newer push replaced
-- the path at this site; 'removed' = the artifact was deleted. Both count as done.
CREATE TABLE push_site_artifacts (
    push          INTEGER NOT NULL,
    site          TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    blob          BLOB    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'fetching', 'complete', 'failed', 'superseded', 'removed')),
    bytes_needed  INTEGER,
    error         TEXT,
    PRIMARY KEY (push, site, path),
    FOREIGN KEY (push, site) REFERENCES push_sites (push, site) ON DELETE CASCADE
);
CREATE INDEX push_site_artifacts_site ON push_site_artifacts (site, path);
