-- A line a script cannot fill, and admission that passes over tickets nobody holds.
-- Leading zero bits of SHA-256 a join's solved challenge must show (0: no challenge asked).
ALTER TABLE cohorts ADD COLUMN join_difficulty INTEGER NOT NULL DEFAULT 0;
-- The instant up to which the extra rate for returning tickets has been spent (like
-- `admission_clock_ms`, shared by every node through a compare-and-set on the row).
ALTER TABLE cohorts ADD COLUMN return_clock_ms BIGINT NOT NULL DEFAULT 0;
-- Challenges whose solution took a ticket: one solution, one ticket, at any node. Forgotten
-- once expired (an expired challenge is refused anyway).
CREATE TABLE used_challenges (
    id TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_challenges_expiry ON used_challenges (expires_at);
-- The queue-index ranges an admission step passed over because nobody had polled those
-- tickets for ABSENT_AFTER_SECONDS (JSON, like `cohorts.ticket_gaps`), written with the step.
ALTER TABLE admissions ADD COLUMN passed TEXT NOT NULL DEFAULT '[]';
-- Passed-over tickets that polled again and were admitted beside the line, once each.
CREATE TABLE returns (
    cohort_id INTEGER NOT NULL REFERENCES cohorts (id),
    queue_index BIGINT NOT NULL,
    admitted_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cohort_id, queue_index)
);
CREATE INDEX returns_by_time ON returns (cohort_id, admitted_at_ms);
-- What each node saw of the tickets near a cohort's front (several nodes only): bit i of
-- `bits` (hex) is set if queue index `from_index + i` polled at that node within
-- ABSENT_AFTER_SECONDS before `written_ms`.
CREATE TABLE presence (
    cohort_id INTEGER NOT NULL REFERENCES cohorts (id),
    node TEXT NOT NULL,
    from_index BIGINT NOT NULL,
    bits TEXT NOT NULL,
    written_ms BIGINT NOT NULL,
    PRIMARY KEY (cohort_id, node)
);
