-- sitecast origin database, version 6: join tokens expire. join_token_expires is the unix time
-- (seconds) after which the site's unused join token is refused; NULL for tokens issued before
-- this version (they keep working until used or rotated).
ALTER TABLE sites ADD COLUMN join_token_expires INTEGER;
