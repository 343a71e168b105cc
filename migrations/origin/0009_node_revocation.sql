-- sitecast origin database, version 9: one node can be revoked without touching its site. A
-- revoked node's certificate fingerprint is kept with the reason, so the edge presenting it
-- is told why it is refused (and stops retrying) instead of being treated as a stranger.
-- Deleting a site revokes its nodes the same way. nodes.software is what the node's last
-- Hello said.
CREATE TABLE revoked_nodes (
    cert_sha256  BLOB    PRIMARY KEY,
    site         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    revoked      INTEGER NOT NULL,
    reason       TEXT    NOT NULL
) WITHOUT ROWID;
ALTER TABLE nodes ADD COLUMN software TEXT;
