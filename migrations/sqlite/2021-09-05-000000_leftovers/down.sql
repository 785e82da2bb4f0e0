DROP TABLE leftover_offers;
DROP TABLE leftover_entry_centers;
DROP TABLE leftover_entries;
ALTER TABLE slots DROP COLUMN leftover_until;
