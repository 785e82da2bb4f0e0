DROP TABLE outbox;
ALTER TABLE leftover_entries DROP COLUMN phone_sealed;
ALTER TABLE citizens DROP COLUMN phone_sealed;
