//! Centers, their slots, and the inventory rules: how many places are left, which slot the
//! second dose takes, and what a booking or a cancellation does to the counts. The
//! `CenterInventory` actor owns one `Inventory`; every rule here is testable without it.

use super::identity::parse_date;
use super::{invalid, text, vaccine, Invalid};
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use utoipa::ToSchema;

/// How far past the target day the second dose may fall, inclusive.
pub const SECOND_DOSE_WINDOW_DAYS: u64 = 7;
pub const MAX_SLOTS_PER_REQUEST: usize = 20_000;
pub const MAX_CAPACITY: i64 = 100_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CenterRequest {
    #[schema(schema_with = super::schemas::text_100)]
    pub name: String,
    #[schema(schema_with = super::schemas::text_50)]
    pub region: String,
    #[schema(schema_with = super::schemas::text_200)]
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCenter {
    pub name: String,
    pub region: String,
    pub address: String,
}

impl TryFrom<CenterRequest> for NewCenter {
    type Error = Invalid;
    fn try_from(r: CenterRequest) -> Result<Self, Invalid> {
        Ok(Self {
            name: text("name", &r.name, 100)?,
            region: text("region", &r.region, 50)?,
            address: text("address", &r.address, 200)?,
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct CenterView {
    pub id: i32,
    pub name: String,
    pub region: String,
    pub address: String,
    pub remaining: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotsRequest {
    #[schema(min_items = 1, max_items = 20000)]
    pub slots: Vec<SlotRequest>,
}

/// `end_time` must be after `start_time` (else 422 `validation`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotRequest {
    #[schema(schema_with = super::schemas::date)]
    pub date: String,
    #[schema(schema_with = super::schemas::time)]
    pub start_time: String,
    #[schema(schema_with = super::schemas::time)]
    pub end_time: String,
    #[schema(minimum = 1, maximum = 100000)]
    #[serde(with = "super::whole")]
    pub capacity: i64,
    #[schema(schema_with = super::schemas::vaccine)]
    pub vaccine: String,
}

/// A slot the operators may add: a day, a time span within it, a capacity, a vaccine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSlot {
    pub date: NaiveDate,
    /// Minutes since midnight.
    pub start: u16,
    pub end: u16,
    pub capacity: i64,
    pub vaccine: String,
}

impl TryFrom<SlotRequest> for NewSlot {
    type Error = Invalid;
    fn try_from(r: SlotRequest) -> Result<Self, Invalid> {
        let date = parse_date("date", &r.date)?;
        let start = parse_time("start_time", &r.start_time)?;
        let end = parse_time("end_time", &r.end_time)?;
        if end <= start {
            return invalid("end_time must be after start_time");
        }
        if !(1..=MAX_CAPACITY).contains(&r.capacity) {
            return invalid(format!("capacity must be between 1 and {MAX_CAPACITY}"));
        }
        Ok(Self {
            date,
            start,
            end,
            capacity: r.capacity,
            vaccine: vaccine(&r.vaccine)?,
        })
    }
}

pub fn parse_slots(r: SlotsRequest) -> Result<Vec<NewSlot>, Invalid> {
    if r.slots.is_empty() || r.slots.len() > MAX_SLOTS_PER_REQUEST {
        return invalid(format!(
            "slots must hold between 1 and {MAX_SLOTS_PER_REQUEST} slots"
        ));
    }
    r.slots.into_iter().map(NewSlot::try_from).collect()
}

/// Strict `HH:MM`, 00:00 to 23:59, as minutes since midnight.
pub fn parse_time(field: &str, value: &str) -> Result<u16, Invalid> {
    let b = value.as_bytes();
    let digit = |i: usize| (b[i] as char).to_digit(10);
    if b.len() == 5 && b[2] == b':' {
        if let (Some(h1), Some(h2), Some(m1), Some(m2)) = (digit(0), digit(1), digit(3), digit(4)) {
            let (h, m) = (h1 * 10 + h2, m1 * 10 + m2);
            if h < 24 && m < 60 {
                return Ok((h * 60 + m) as u16);
            }
        }
    }
    invalid(format!("{field} must be HH:MM"))
}

pub fn format_time(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Places left per vaccine and day.
pub type Supply = HashMap<String, BTreeMap<NaiveDate, i64>>;

/// One slot and how many of its places are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub id: i32,
    pub date: NaiveDate,
    pub start: u16,
    pub end: u16,
    pub vaccine: String,
    pub capacity: i64,
    pub booked: i64,
}

impl Slot {
    pub fn remaining(&self) -> i64 {
        (self.capacity - self.booked).max(0)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct SlotView {
    pub id: i32,
    #[schema(format = Date)]
    pub date: String,
    pub start_time: String,
    pub end_time: String,
    pub vaccine: String,
    pub capacity: i64,
    pub remaining: i64,
}

impl From<&Slot> for SlotView {
    fn from(s: &Slot) -> Self {
        Self {
            id: s.id,
            date: s.date.to_string(),
            start_time: format_time(s.start),
            end_time: format_time(s.end),
            vaccine: s.vaccine.clone(),
            capacity: s.capacity,
            remaining: s.remaining(),
        }
    }
}

/// Why a booking could not take its places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    SlotFull,
    SlotPassed,
    WrongVaccine,
    NoSecondDoseSlot,
}

/// The places a booking took: both doses, same center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub first: Slot,
    pub second: Slot,
}

/// The places of one center. Only its owner mutates it, one message at a time, so a check
/// and the decrement that follows it can never interleave with another booking.
#[derive(Debug, Default)]
pub struct Inventory {
    slots: HashMap<i32, Slot>,
    /// (vaccine, date, start, id): finds a second dose by day and time without a scan.
    order: BTreeSet<(String, NaiveDate, u16, i32)>,
}

impl Inventory {
    pub fn add(&mut self, slot: Slot) {
        self.order
            .insert((slot.vaccine.clone(), slot.date, slot.start, slot.id));
        self.slots.insert(slot.id, slot);
    }

    pub fn get(&self, id: i32) -> Option<&Slot> {
        self.slots.get(&id)
    }

    pub fn remaining(&self) -> i64 {
        self.slots.values().map(Slot::remaining).sum()
    }

    /// All slots from `today` on, by day and time.
    pub fn listing(&self, today: NaiveDate) -> Vec<SlotView> {
        let mut v: Vec<&Slot> = self.slots.values().filter(|s| s.date >= today).collect();
        v.sort_by_key(|s| (s.date, s.start, s.id));
        v.into_iter().map(SlotView::from).collect()
    }

    /// Places left per vaccine and day: what the waiting rooms read to know whether supply
    /// is left.
    pub fn supply(&self) -> Supply {
        let mut out = Supply::new();
        for s in self.slots.values() {
            *out.entry(s.vaccine.clone())
                .or_default()
                .entry(s.date)
                .or_default() += s.remaining();
        }
        out
    }

    /// Takes a place in `first_id` and in the second-dose slot the contract picks, or none.
    pub fn reserve(
        &mut self,
        first_id: i32,
        vaccine: &str,
        interval_days: u32,
        today: NaiveDate,
    ) -> Result<Reservation, Refusal> {
        let first = self.slots.get(&first_id).ok_or(Refusal::NotFound)?;
        if first.vaccine != vaccine {
            return Err(Refusal::WrongVaccine);
        }
        if first.date < today {
            return Err(Refusal::SlotPassed);
        }
        if first.remaining() == 0 {
            return Err(Refusal::SlotFull);
        }
        let second_id = self
            .second_dose_for(first, interval_days)
            .ok_or(Refusal::NoSecondDoseSlot)?;
        for id in [first_id, second_id] {
            if let Some(s) = self.slots.get_mut(&id) {
                s.booked += 1;
            }
        }
        Ok(Reservation {
            first: self.slots[&first_id].clone(),
            second: self.slots[&second_id].clone(),
        })
    }

    /// The same start time on the target day if it has room, else the earliest slot with room
    /// from the target day to `SECOND_DOSE_WINDOW_DAYS` after it.
    fn second_dose_for(&self, first: &Slot, interval_days: u32) -> Option<i32> {
        let target = first
            .date
            .checked_add_days(Days::new(interval_days.into()))?;
        let last = target.checked_add_days(Days::new(SECOND_DOSE_WINDOW_DAYS))?;
        let v = first.vaccine.clone();
        let has_room = |id: &i32| self.slots.get(id).is_some_and(|s| s.remaining() > 0);
        let same_time = self
            .order
            .range(
                (v.clone(), target, first.start, i32::MIN)
                    ..=(v.clone(), target, first.start, i32::MAX),
            )
            .map(|k| k.3)
            .find(has_room);
        same_time.or_else(|| {
            self.order
                .range((v.clone(), target, 0, i32::MIN)..=(v, last, u16::MAX, i32::MAX))
                .map(|k| k.3)
                .find(has_room)
        })
    }

    /// Takes a place for a second dose alone, by the usual rule, after a first dose given
    /// outside the slots (a leftover dose) on `date` at `start` (minutes after midnight).
    pub fn reserve_second(
        &mut self,
        vaccine: &str,
        date: NaiveDate,
        start: u16,
        interval_days: u32,
    ) -> Result<Slot, Refusal> {
        let first = Slot {
            id: i32::MIN,
            date,
            start,
            end: start,
            vaccine: vaccine.to_string(),
            capacity: 0,
            booked: 0,
        };
        let id = self
            .second_dose_for(&first, interval_days)
            .ok_or(Refusal::NoSecondDoseSlot)?;
        let slot = self.slots.get_mut(&id).ok_or(Refusal::NoSecondDoseSlot)?;
        slot.booked += 1;
        Ok(slot.clone())
    }

    /// Forgets a cancelled slot: it is never listed, offered or booked again here. Answers
    /// whether it was known.
    pub fn remove(&mut self, id: i32) -> bool {
        match self.slots.remove(&id) {
            Some(s) => {
                self.order.remove(&(s.vaccine, s.date, s.start, s.id));
                true
            }
            None => false,
        }
    }

    /// Gives back one place of one slot.
    pub fn release_one(&mut self, id: i32) {
        if let Some(s) = self.slots.get_mut(&id) {
            s.booked = (s.booked - 1).max(0);
        }
    }

    /// Marks a slot full (the database refused a booking of it).
    pub fn fill(&mut self, id: i32) {
        if let Some(s) = self.slots.get_mut(&id) {
            s.booked = s.booked.max(s.capacity);
        }
    }

    /// Sets a slot's capacity and places taken (as another node's bookings left them);
    /// answers whether anything changed.
    pub fn set_places(&mut self, id: i32, capacity: i64, booked: i64) -> bool {
        match self.slots.get_mut(&id) {
            Some(s) if (s.capacity, s.booked) != (capacity, booked) => {
                s.capacity = capacity;
                s.booked = booked;
                true
            }
            _ => false,
        }
    }

    /// Takes from a read that may be older than this slot's last change here only what makes
    /// it fuller: the smaller capacity and the more places taken. Answers whether anything
    /// changed.
    pub fn narrow_places(&mut self, id: i32, capacity: i64, booked: i64) -> bool {
        match self.slots.get(&id) {
            Some(s) => {
                let (c, b) = (s.capacity.min(capacity), s.booked.max(booked));
                self.set_places(id, c, b)
            }
            None => false,
        }
    }

    /// Gives back the places of a cancelled or failed booking.
    pub fn release(&mut self, first_id: i32, second_id: i32) {
        for id in [first_id, second_id] {
            if let Some(s) = self.slots.get_mut(&id) {
                s.booked = (s.booked - 1).max(0);
            }
        }
    }
}

/// How many more bookings (pairs of doses) one center's places allow for a vaccine given as
/// places left per day: a first dose counts only when some day in its second-dose window still
/// has room, and a pair needs two places.
pub fn bookable_pairs(
    by_day: &BTreeMap<NaiveDate, i64>,
    interval_days: u32,
    today: NaiveDate,
) -> i64 {
    let total: i64 = by_day.range(today..).map(|(_, left)| left).sum();
    let mut feasible_first = 0;
    for (day, left) in by_day.range(today..).filter(|(_, left)| **left > 0) {
        let Some(target) = day.checked_add_days(Days::new(interval_days.into())) else {
            continue;
        };
        let last = target + Days::new(SECOND_DOSE_WINDOW_DAYS);
        if by_day.range(target..=last).any(|(_, l)| *l > 0) {
            feasible_first += left;
        }
    }
    feasible_first.min(total / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2021, 8, 1).unwrap() + Days::new(d.into())
    }

    fn slot(id: i32, d: u32, start: u16, capacity: i64) -> Slot {
        Slot {
            id,
            date: day(d),
            start,
            end: start + 60,
            vaccine: "Moderna".into(),
            capacity,
            booked: 0,
        }
    }

    fn inventory(slots: Vec<Slot>) -> Inventory {
        let mut inv = Inventory::default();
        slots.into_iter().for_each(|s| inv.add(s));
        inv
    }

    #[test]
    fn a_read_older_than_a_change_here_only_makes_a_slot_fuller() {
        let mut inv = inventory(vec![slot(1, 0, 600, 10)]);
        inv.slots.get_mut(&1).unwrap().booked = 4;
        // Another node's bookings in the read: taken.
        assert!(inv.narrow_places(1, 10, 6));
        assert_eq!(
            (inv.get(1).unwrap().capacity, inv.get(1).unwrap().booked),
            (10, 6)
        );
        // Fewer taken, or more capacity, than known here: left as it is.
        assert!(!inv.narrow_places(1, 12, 5));
        assert_eq!(
            (inv.get(1).unwrap().capacity, inv.get(1).unwrap().booked),
            (10, 6)
        );
        // A capacity lowered elsewhere: taken.
        assert!(inv.narrow_places(1, 8, 3));
        assert_eq!(
            (inv.get(1).unwrap().capacity, inv.get(1).unwrap().booked),
            (8, 6)
        );
        assert!(
            !inv.narrow_places(99, 1, 1),
            "an unknown slot changes nothing"
        );
    }

    #[test]
    fn the_second_dose_takes_the_same_time_on_the_target_day() {
        let mut inv = inventory(vec![
            slot(1, 0, 600, 5),
            slot(2, 28, 540, 5),
            slot(3, 28, 600, 5),
        ]);
        let r = inv.reserve(1, "Moderna", 28, day(0)).unwrap();
        assert_eq!(r.second.id, 3);
    }

    #[test]
    fn a_full_target_time_falls_back_to_the_earliest_slot_in_the_window() {
        let mut inv = inventory(vec![
            slot(1, 0, 600, 5),
            slot(2, 28, 600, 1),
            slot(3, 30, 900, 5),
            slot(4, 31, 540, 5),
        ]);
        inv.slots.get_mut(&2).unwrap().booked = 1;
        assert_eq!(inv.reserve(1, "Moderna", 28, day(0)).unwrap().second.id, 3);
    }

    #[test]
    fn no_slot_within_seven_days_refuses_both_doses() {
        let mut inv = inventory(vec![
            slot(1, 0, 600, 5),
            slot(2, 36, 600, 5),
            slot(3, 27, 600, 5),
        ]);
        assert_eq!(
            inv.reserve(1, "Moderna", 28, day(0)),
            Err(Refusal::NoSecondDoseSlot)
        );
        assert_eq!(
            inv.get(1).unwrap().booked,
            0,
            "the first place is not taken"
        );
        // The last day of the window still counts.
        let mut inv = inventory(vec![slot(1, 0, 600, 5), slot(2, 35, 600, 5)]);
        assert_eq!(inv.reserve(1, "Moderna", 28, day(0)).unwrap().second.id, 2);
    }

    #[test]
    fn a_full_slot_and_a_wrong_vaccine_are_refused() {
        let mut inv = inventory(vec![slot(1, 0, 600, 1), slot(2, 28, 600, 5)]);
        assert_eq!(
            inv.reserve(1, "Pfizer", 28, day(0)),
            Err(Refusal::WrongVaccine)
        );
        inv.reserve(1, "Moderna", 28, day(0)).unwrap();
        assert_eq!(
            inv.reserve(1, "Moderna", 28, day(0)),
            Err(Refusal::SlotFull)
        );
    }

    #[test]
    fn release_gives_back_both_places() {
        let mut inv = inventory(vec![slot(1, 0, 600, 1), slot(2, 28, 600, 1)]);
        let r = inv.reserve(1, "Moderna", 28, day(0)).unwrap();
        assert_eq!(inv.remaining(), 0);
        inv.release(r.first.id, r.second.id);
        assert_eq!(inv.remaining(), 2);
    }

    #[test]
    fn bookable_pairs_counts_only_first_doses_with_a_second() {
        let mut by_day = BTreeMap::new();
        by_day.insert(day(0), 10);
        by_day.insert(day(28), 4);
        by_day.insert(day(70), 10);
        // Day 0 has a second-dose day; days 28 and 70 do not: 10 feasible, 24 places -> 10.
        assert_eq!(bookable_pairs(&by_day, 28, day(0)), 10);
        // Days already past count for nothing.
        assert_eq!(bookable_pairs(&by_day, 28, day(1)), 0);
        by_day.insert(day(28), 0);
        assert_eq!(bookable_pairs(&by_day, 28, day(0)), 0);
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(parse_time("t", "09:30"), Ok(570));
        assert!(parse_time("t", "24:00").is_err());
        assert!(parse_time("t", "9:30").is_err());
        assert_eq!(format_time(570), "09:30");
    }
}
