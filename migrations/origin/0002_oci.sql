-- sitecast origin database, version 2: OCI images.
-- Digests are the 32-byte SHA-256 of the content (OCI digests are always sha256 here).
-- Manifests and indexes are stored byte-exact as ordinary blobs (recipe + chunks), so they are
-- chunked, pushed and verified exactly like layers and artifacts.

CREATE INDEX blobs_sha256 ON blobs (sha256);

-- Blobs (layers, configs) linked into a repository: uploaded there or mounted from another.
CREATE TABLE oci_repo_blobs (
    repo     TEXT    NOT NULL,
    blob     BLOB    NOT NULL REFERENCES blobs (blake3),
    created  INTEGER NOT NULL,
    PRIMARY KEY (repo, blob)
) WITHOUT ROWID;
CREATE INDEX oci_repo_blobs_blob ON oci_repo_blobs (blob);

-- Manifests and indexes of a repository, by digest. subject (a digest) and artifact_type
-- feed the referrers API; annotations is the manifest's JSON annotations object, if any.
CREATE TABLE oci_manifests (
    repo           TEXT    NOT NULL,
    digest         BLOB    NOT NULL,
    blob           BLOB    NOT NULL REFERENCES blobs (blake3),
    media_type     TEXT    NOT NULL,
    artifact_type  TEXT,
    subject        BLOB,
    annotations    TEXT,
    created        INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX oci_manifests_blob ON oci_manifests (blob);
CREATE INDEX oci_manifests_subject ON oci_manifests (repo, subject);

-- What each manifest references (config, layers, or child manifests of an index), by digest.
CREATE TABLE oci_manifest_refs (
    repo      TEXT  NOT NULL,
    manifest  BLOB  NOT NULL,
    child     BLOB  NOT NULL,
    kind      TEXT  NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo, manifest, child),
    FOREIGN KEY (repo, manifest) REFERENCES oci_manifests (repo, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX oci_manifest_refs_child ON oci_manifest_refs (repo, child);

-- Tags: mutable pointers to a manifest digest.
CREATE TABLE oci_tags (
    repo     TEXT    NOT NULL,
    tag      TEXT    NOT NULL,
    digest   BLOB    NOT NULL,
    updated  INTEGER NOT NULL,
    PRIMARY KEY (repo, tag),
    FOREIGN KEY (repo, digest) REFERENCES oci_manifests (repo, digest) ON DELETE CASCADE
) WITHOUT ROWID;
