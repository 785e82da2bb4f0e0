DROP INDEX slots_leftovers;
DROP INDEX leftover_entries_by_day;
