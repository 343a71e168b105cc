-- sitecast origin database, version 12: pushes roll out in waves or rolling (see
-- origin/src/rollout.rs). pushes.rollout is the policy (JSON; NULL = every site at once);
-- halted/halt_reason say when and why its error threshold stopped it; failures_accepted is how
-- many failed sites an admin's approval accepted; approved_wave the highest wave approved.
-- push_sites.released is when the push reached the site's desired state (NULL = waiting for
-- its wave or its turn); wave is the site's wave (NULL without waves). Existing push-sites were
-- all released when their push was created.
ALTER TABLE pushes ADD COLUMN rollout TEXT;
ALTER TABLE pushes ADD COLUMN halted INTEGER;
ALTER TABLE pushes ADD COLUMN halt_reason TEXT;
ALTER TABLE pushes ADD COLUMN failures_accepted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pushes ADD COLUMN approved_wave INTEGER NOT NULL DEFAULT 0;
ALTER TABLE push_sites ADD COLUMN released INTEGER;
ALTER TABLE push_sites ADD COLUMN wave INTEGER;
UPDATE push_sites SET released = (SELECT created FROM pushes WHERE id = push_sites.push);
