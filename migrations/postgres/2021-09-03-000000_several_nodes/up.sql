-- What several nodes on one database share.
-- The instant up to which a cohort's admission rate has been spent: an admission step of k
-- people moves it k / rate seconds on, and is written only if the front it started from is
-- still the front (`queries::record_admission`), whichever node makes it. A compare-and-set
-- on the row, not a leader: no lease to lose, and a node that dies leaves the clock to the
-- others' next tick.
ALTER TABLE cohorts ADD COLUMN admission_clock_ms BIGINT NOT NULL DEFAULT 0;
-- Bookings made by the tickets of this admission step: what its admitted hold in reserve, for
-- every node's count of the places held.
ALTER TABLE admissions ADD COLUMN booked BIGINT NOT NULL DEFAULT 0;
-- Each node's heartbeat, for the cluster's stats.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    ready BOOLEAN NOT NULL,
    -- {"requests_per_s", "in_flight", "identity_in_flight", "identity_capacity"}
    stats TEXT NOT NULL DEFAULT '{}'
);
-- Limits that hold across nodes (checks per identity and per pass, lookups per client):
-- attempts per key and fixed window, read as a sliding window with the window before.
CREATE TABLE limit_hits (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);
