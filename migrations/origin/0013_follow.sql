-- sitecast origin database, version 13: a push may follow its content. pushes.follow = 1: a
-- version published later at a path its content entries cover is delivered to its sites by a
-- new push, whose followed_from names the following push.
ALTER TABLE pushes ADD COLUMN follow INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pushes ADD COLUMN followed_from INTEGER;
