-- sitecast edge database, version 1.
-- Encoded records (site config, recipes) are postcard with a leading version byte.

-- The site configuration (users, grants) last received from the origin. One row.
CREATE TABLE site_config (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  INTEGER NOT NULL,
    config    BLOB    NOT NULL
);

-- The desired state last received from the origin: its revision (one row) and its artifacts.
CREATE TABLE desired_state (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  INTEGER NOT NULL
);

CREATE TABLE desired_artifacts (
    path      TEXT    PRIMARY KEY,
    blob      BLOB    NOT NULL,
    len       INTEGER NOT NULL,
    sha256    BLOB    NOT NULL,
    modified  INTEGER NOT NULL
);

-- Blob recipes (blob id -> encoded BlobRecipe), for desired and published blobs.
CREATE TABLE recipes (
    blob      BLOB    PRIMARY KEY,
    recipe    BLOB    NOT NULL
);

-- What devices see: only complete, verified artifacts. A path switches blobs in one statement.
CREATE TABLE published (
    path         TEXT    PRIMARY KEY,
    blob         BLOB    NOT NULL REFERENCES recipes (blob),
    len          INTEGER NOT NULL,
    sha256       BLOB    NOT NULL,
    modified     INTEGER NOT NULL,
    published_at INTEGER NOT NULL
);

-- Per-artifact transfer state, reported to the origin.
CREATE TABLE transfers (
    path          TEXT    PRIMARY KEY,
    blob          BLOB    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'fetching', 'complete', 'failed')),
    bytes_total   INTEGER NOT NULL,
    bytes_needed  INTEGER NOT NULL,
    bytes_fetched INTEGER NOT NULL,
    error         TEXT,
    updated_at    INTEGER NOT NULL
);
