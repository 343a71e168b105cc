-- sitecast origin database, version 10: when pushes may use a site's link. A site has an IANA
-- time zone (its windows and its pushes' windows are read in it) and recurring transfer
-- windows; a push has a start time (unix seconds, NULL = at once) and windows of its own.
-- Windows are JSON arrays of their canonical text forms ("mon-fri 01:00 4h"); [] = always open.
-- A push's priority: at a site, an unfinished push of a higher one holds the lower ones.
ALTER TABLE sites ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE sites ADD COLUMN windows TEXT NOT NULL DEFAULT '[]';
ALTER TABLE pushes ADD COLUMN start_at INTEGER;
ALTER TABLE pushes ADD COLUMN windows TEXT NOT NULL DEFAULT '[]';
ALTER TABLE pushes ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- When an admin paused the push (unix seconds; NULL = running): held at every site.
ALTER TABLE pushes ADD COLUMN paused INTEGER;
