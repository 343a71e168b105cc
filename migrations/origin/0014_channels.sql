-- sitecast origin database, version 14: channels. A channel is an artifact path (its row in
-- artifacts names the version's blob) that an admin points at a version path instead of
-- uploading to; target is that version's path when it was set, moved when (unix seconds).
CREATE TABLE channels (
    path    TEXT    PRIMARY KEY,
    target  TEXT    NOT NULL,
    moved   INTEGER NOT NULL
);
