-- sitecast edge database, version 2: the OCI registry mirror.
-- Pushed image blobs are ordinary desired/published artifacts at /.oci/sha256/<hex>; these
-- tables hold what makes them images, and what was fetched on demand.

-- The image state last received from the origin (one row; encoded ImageState).
CREATE TABLE oci_state (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    state  BLOB    NOT NULL
);

-- Tags as served. pinned = 1: a pushed tag, published once everything its manifest references
-- is verified here; 0: learned on demand (refreshed from the origin when older than tag_ttl).
CREATE TABLE oci_tags (
    repo     TEXT    NOT NULL,
    tag      TEXT    NOT NULL,
    digest   BLOB    NOT NULL,
    pinned   INTEGER NOT NULL,
    updated  INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
) WITHOUT ROWID;

-- Which digests a repository may serve: manifests (with their media type) and blobs.
CREATE TABLE oci_links (
    repo        TEXT    NOT NULL,
    digest      BLOB    NOT NULL,
    media_type  TEXT,
    pinned      INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX oci_links_digest ON oci_links (digest);

-- Blobs fetched on demand: a cache bounded by oci.cache_max_bytes, least recently used first.
-- Their recipes are in `recipes`; their chunks stay while the row exists.
CREATE TABLE oci_cache (
    digest     BLOB    PRIMARY KEY,
    blob       BLOB    NOT NULL,
    len        INTEGER NOT NULL,
    last_used  INTEGER NOT NULL
) WITHOUT ROWID;
