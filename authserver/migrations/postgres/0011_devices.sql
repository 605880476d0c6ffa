-- Remembered devices: the device cookie (still kept as its hash only) of a user becomes
-- a remembered device with a trust duration (a second factor passed on it, or a sign-in
-- the tenant's policy did not ask one of), what it is and where it was last seen
-- (docs/security.md "Remembered devices"). The last row a user was seen on is also
-- the previous sign-in of the impossible-travel check.
ALTER TABLE known_devices ADD COLUMN trusted_until BIGINT;
-- "Firefox on Linux": the summary the account page shows, never the whole header.
ALTER TABLE known_devices ADD COLUMN user_agent TEXT;
ALTER TABLE known_devices ADD COLUMN ip TEXT;
-- ISO 3166-1 alpha-2 from the GeoIP database, when one is configured.
ALTER TABLE known_devices ADD COLUMN country TEXT;
-- From a GeoIP city database: where the last sign-in on this device came from.
ALTER TABLE known_devices ADD COLUMN latitude DOUBLE PRECISION;
ALTER TABLE known_devices ADD COLUMN longitude DOUBLE PRECISION;
CREATE INDEX known_devices_user_seen ON known_devices (tenant_id, user_id, last_seen_at);
