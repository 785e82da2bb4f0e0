-- The line's reads by day: the next waiting sign-up and a position scan today's sign-ups, not
-- every day's; a center's leftovers are found without walking its ordinary slots.
CREATE INDEX leftover_entries_by_day ON leftover_entries (day, state, id);
CREATE INDEX slots_leftovers ON slots (center_id, date) WHERE leftover_until IS NOT NULL;
