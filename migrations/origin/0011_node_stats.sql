-- sitecast origin database, version 11: what each node last said of its disk and content
-- (NodeStats on the control stream, about every minute; NULL until the node first says), and
-- sites' disk quotas.
ALTER TABLE nodes ADD COLUMN disk_total INTEGER;
ALTER TABLE nodes ADD COLUMN disk_free INTEGER;
ALTER TABLE nodes ADD COLUMN store_bytes INTEGER;
ALTER TABLE nodes ADD COLUMN artifacts_held INTEGER;
ALTER TABLE nodes ADD COLUMN artifacts_pending INTEGER;
ALTER TABLE nodes ADD COLUMN bytes_pending INTEGER;
ALTER TABLE nodes ADD COLUMN stats_at INTEGER;
-- A site's disk quota in bytes (NULL = none): a push whose content would take the site's
-- desired state past it is refused.
ALTER TABLE sites ADD COLUMN quota INTEGER;
