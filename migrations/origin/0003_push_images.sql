-- sitecast origin database, version 3: pushes of OCI images.
-- A pushed image's manifests and blobs travel as push_artifacts at /.oci/sha256/<hex>; this
-- table records which repository tags (or digests) the push named, so the site's image state
-- (tags to publish once everything they reference is there) can be derived.
-- tag is '' for an image pushed by digest.
CREATE TABLE push_images (
    push    INTEGER NOT NULL REFERENCES pushes (id) ON DELETE CASCADE,
    repo    TEXT    NOT NULL,
    tag     TEXT    NOT NULL,
    digest  BLOB    NOT NULL,
    PRIMARY KEY (push, repo, tag, digest)
) WITHOUT ROWID;
CREATE INDEX push_images_repo ON push_images (repo);
