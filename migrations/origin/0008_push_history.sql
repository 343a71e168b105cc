-- sitecast origin database, version 8: pushes can be cancelled, and deleting a site keeps its
-- push history. push_sites is rebuilt (SQLite cannot change a CHECK or drop a foreign key in
-- place) without its foreign key to sites, and with every state a push-site can be in:
-- 'cancelled' (the push was cancelled, or the site deleted, before it completed there) and
-- the states scheduling adds. push_site_artifacts is rebuilt with it: dropping push_sites
-- while foreign keys are on would delete its rows. pushes.cancelled is when the push was
-- cancelled (unix seconds). push_sites.site_deleted is when the site was deleted: such rows
-- are history only, never the desired state of a new site of the same name.
ALTER TABLE pushes ADD COLUMN cancelled INTEGER;

CREATE TABLE push_sites_v8 (
    push           INTEGER NOT NULL REFERENCES pushes (id) ON DELETE CASCADE,
    site           TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('pending', 'scheduled', 'waiting_window',
                       'transferring', 'verifying', 'complete', 'failed', 'paused', 'cancelled')),
    bytes_total    INTEGER NOT NULL,
    bytes_needed   INTEGER NOT NULL DEFAULT 0,
    payload_bytes  INTEGER NOT NULL DEFAULT 0,
    framing_bytes  INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    updated        INTEGER NOT NULL,
    site_deleted   INTEGER,
    PRIMARY KEY (push, site)
);
INSERT INTO push_sites_v8 SELECT push, site, state, bytes_total, bytes_needed, payload_bytes,
    framing_bytes, error, updated, NULL FROM push_sites;

CREATE TABLE push_site_artifacts_v8 (
    push          INTEGER NOT NULL,
    site          TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    blob          BLOB    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'fetching', 'complete', 'failed', 'superseded', 'removed')),
    bytes_needed  INTEGER,
    error         TEXT,
    PRIMARY KEY (push, site, path),
    FOREIGN KEY (push, site) REFERENCES push_sites_v8 (push, site) ON DELETE CASCADE
);
INSERT INTO push_site_artifacts_v8 SELECT push, site, path, blob, state, bytes_needed, error
    FROM push_site_artifacts;

DROP TABLE push_site_artifacts;
DROP TABLE push_sites;
ALTER TABLE push_sites_v8 RENAME TO push_sites;
ALTER TABLE push_site_artifacts_v8 RENAME TO push_site_artifacts;
CREATE INDEX push_sites_site ON push_sites (site);
CREATE INDEX push_site_artifacts_site ON push_site_artifacts (site, path);
