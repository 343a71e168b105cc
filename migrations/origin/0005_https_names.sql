-- sitecast origin database, version 5: the names a site's edges serve HTTPS under. An edge set to
-- take its HTTPS certificate from the origin (http.tls_from_origin) gets one issued by the
-- origin's CA for exactly these names (a JSON array of DNS names and IP addresses).
ALTER TABLE sites ADD COLUMN https_names TEXT NOT NULL DEFAULT '[]';
