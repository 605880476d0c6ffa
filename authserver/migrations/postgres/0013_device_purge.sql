-- `authserver purge` (target `devices`) forgets remembered devices not seen for
-- `purge.device_retention_days` whose trust has ended: its batches look rows up by
-- when they were last seen, across users.
CREATE INDEX known_devices_last_seen ON known_devices (last_seen_at);
