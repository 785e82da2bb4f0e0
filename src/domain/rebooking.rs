//! Where a dose goes when its place is taken away (a slot cancelled or shrunk) or its day
//! changes (a second-dose shift): the pure move rule of "Supply changes and rebooking", and
//! the checks of the two admin requests that start a move. No I/O: `db::rebooking` reads the
//! candidates and writes what this decides.
//!
//! The rule, as a demanding citizen would expect it (the contract gives the order of places,
//! this module settles the ties):
//! 1. the same center, same vaccine, the nearest day to the target from the target day to 7
//!    days after it (a dose is never moved earlier than its target: for a second dose that
//!    would break the interval);
//! 2. on that day, the same start time first, then the nearest start time (earlier on a tie),
//!    then the lowest slot id;
//! 3. only when the own center has no such place: another center of the same region, by the
//!    same order (day, then start time), then the lowest center id;
//! 4. else none: the booking needs rebooking.
//!
//! Dose 2 when dose 1 moves: the interval rule of the contract must still hold, so dose 2
//! stays where it is when its day is still within `[new first + interval, + 7 days]`; else it
//! is moved by this same rule with target `new first + interval`, at its own center first;
//! if it finds no place, the whole booking needs rebooking (neither dose is kept alone).

use super::{invalid, Invalid};
use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Days after the target a moved dose may land on, inclusive (the contract's 7).
pub const MOVE_WINDOW_DAYS: u64 = 7;
/// The longest second-dose shift one job may ask for.
pub const MAX_SHIFT_DAYS: i64 = 90;

/// A place a dose could move to: a slot with room, of the right vaccine, in the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub slot_id: i32,
    pub center_id: i32,
    pub date: NaiveDate,
    /// Minutes after midnight.
    pub start: u16,
    /// Places left.
    pub room: i64,
}

/// What a moved dose looks for: its own center, the target day and the start time it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub center_id: i32,
    pub date: NaiveDate,
    pub start: u16,
}

impl Target {
    /// The last day a dose with this target may land on.
    pub fn last_day(&self) -> Option<NaiveDate> {
        self.date.checked_add_days(Days::new(MOVE_WINDOW_DAYS))
    }
}

/// The place the rule picks among `candidates` (same vaccine and region, as the caller
/// read them), never `exclude` (the slot being emptied); `None`: needs rebooking.
pub fn choose<'a>(
    target: &Target,
    candidates: &'a [Candidate],
    exclude: Option<i32>,
) -> Option<&'a Candidate> {
    let last = target.last_day()?;
    let key = |c: &Candidate| {
        let day = (c.date - target.date).num_days();
        let off = i32::from(c.start) - i32::from(target.start);
        // Nearest start time, the earlier one on a tie (an offset of -30 before +30).
        let time = (off.abs(), off > 0);
        (
            c.center_id != target.center_id,
            day,
            time,
            c.center_id,
            c.slot_id,
        )
    };
    candidates
        .iter()
        .filter(|c| c.room > 0 && Some(c.slot_id) != exclude)
        .filter(|c| c.date >= target.date && c.date <= last)
        .min_by_key(|c| key(c))
}

/// Whether a second dose on `second` still keeps the interval after a first dose on `first`:
/// from `first + interval` to 7 days after it, as at booking.
pub fn second_dose_fits(first: NaiveDate, interval_days: u32, second: NaiveDate) -> bool {
    let Some(from) = first.checked_add_days(Days::new(interval_days.into())) else {
        return false;
    };
    let Some(to) = from.checked_add_days(Days::new(MOVE_WINDOW_DAYS)) else {
        return false;
    };
    second >= from && second <= to
}

/// One dose's move as bookings show it (`moved`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Move {
    /// 1 or 2.
    pub dose: u8,
    pub from: Place,
    pub to: Place,
    /// When it was moved (RFC 3339).
    pub at: String,
}

/// A dose's place, shaped as a booking's dose.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Place {
    pub center_id: i32,
    pub slot_id: i32,
    #[schema(format = Date)]
    pub date: String,
    pub start_time: String,
}

/// `PATCH /api/v1/admin/slots/{id}` as sent. Both fields may be left out: an empty patch
/// changes nothing and answers the slot, as a cohort's empty patch does.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotPatchRequest {
    /// The new number of places (0 or more). Below the places booked, the bookings that no
    /// longer fit are moved, the latest booked first.
    #[serde(default, with = "crate::domain::whole::option")]
    #[schema(minimum = 0, maximum = 100000)]
    pub capacity: Option<i64>,
    /// `true` cancels the slot for good: it is never offered or booked again and its bookings
    /// are moved. `false` is accepted only for a slot that is not cancelled (a no-op).
    #[serde(default)]
    pub cancelled: Option<bool>,
}

/// A checked slot change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPatch {
    pub capacity: Option<i32>,
    pub cancel: bool,
}

impl TryFrom<SlotPatchRequest> for SlotPatch {
    type Error = Invalid;

    fn try_from(r: SlotPatchRequest) -> Result<Self, Invalid> {
        let capacity = match r.capacity {
            None => None,
            Some(c) if (0..=100_000).contains(&c) => Some(c as i32),
            Some(_) => return invalid("capacity must be from 0 to 100000"),
        };
        Ok(Self {
            capacity,
            cancel: r.cancelled == Some(true),
        })
    }
}

/// `POST /api/v1/admin/rebookings` as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShiftRequest {
    #[schema(schema_with = super::schemas::vaccine)]
    pub vaccine: String,
    /// Days to move every second dose still ahead by: 1 to 90. Later only: an earlier second
    /// dose would shorten the approved interval.
    #[serde(with = "crate::domain::whole")]
    #[schema(minimum = 1, maximum = 90)]
    pub second_dose_shift_days: i64,
}

/// A checked second-dose shift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub vaccine: String,
    pub days: i32,
}

impl TryFrom<ShiftRequest> for Shift {
    type Error = Invalid;

    fn try_from(r: ShiftRequest) -> Result<Self, Invalid> {
        let vaccine = super::vaccine(&r.vaccine)?;
        if !(1..=MAX_SHIFT_DAYS).contains(&r.second_dose_shift_days) {
            return invalid(format!(
                "second_dose_shift_days must be from 1 to {MAX_SHIFT_DAYS}"
            ));
        }
        Ok(Self {
            vaccine,
            days: r.second_dose_shift_days as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2021, 9, d).unwrap()
    }

    fn slot(id: i32, center: i32, d: u32, start: u16, room: i64) -> Candidate {
        Candidate {
            slot_id: id,
            center_id: center,
            date: day(d),
            start,
            room,
        }
    }

    const NINE: u16 = 9 * 60;

    fn target(center: i32, d: u32) -> Target {
        Target {
            center_id: center,
            date: day(d),
            start: NINE,
        }
    }

    #[test]
    fn the_same_center_on_the_nearest_day_wins() {
        let c = [
            slot(1, 1, 14, NINE, 5),
            slot(2, 1, 11, NINE + 120, 5),
            slot(3, 2, 10, NINE, 5),
        ];
        assert_eq!(choose(&target(1, 10), &c, None).unwrap().slot_id, 2);
    }

    #[test]
    fn the_same_start_time_comes_first_on_a_day() {
        let c = [
            slot(1, 1, 10, NINE - 30, 5),
            slot(2, 1, 10, NINE, 5),
            slot(3, 1, 10, NINE + 30, 5),
        ];
        assert_eq!(choose(&target(1, 10), &c, None).unwrap().slot_id, 2);
        // Without it, the nearest start, the earlier one on a tie.
        assert_eq!(choose(&target(1, 10), &c[..1], None).unwrap().slot_id, 1);
        let c = [slot(3, 1, 10, NINE + 30, 5), slot(1, 1, 10, NINE - 30, 5)];
        assert_eq!(choose(&target(1, 10), &c, None).unwrap().slot_id, 1);
    }

    #[test]
    fn a_full_an_excluded_or_an_early_slot_is_never_chosen() {
        let c = [
            slot(1, 1, 10, NINE, 0),
            slot(2, 1, 10, NINE, 5),
            slot(3, 1, 9, NINE, 5),
            slot(4, 1, 12, NINE, 5),
        ];
        assert_eq!(choose(&target(1, 10), &c, Some(2)).unwrap().slot_id, 4);
    }

    #[test]
    fn another_center_of_the_region_only_when_the_own_has_none_within_7_days() {
        let c = [
            slot(1, 1, 18, NINE, 5), // 8 days after: out of the window
            slot(2, 3, 12, NINE, 5),
            slot(3, 2, 12, NINE + 60, 5),
            slot(4, 2, 11, NINE + 60, 5),
        ];
        assert_eq!(choose(&target(1, 10), &c, None).unwrap().slot_id, 4);
        let c = [slot(1, 1, 17, NINE, 5), slot(4, 2, 10, NINE, 5)];
        assert_eq!(choose(&target(1, 10), &c, None).unwrap().slot_id, 1);
    }

    #[test]
    fn no_place_anywhere_is_none() {
        let c = [
            slot(1, 1, 18, NINE, 5),
            slot(2, 2, 9, NINE, 5),
            slot(3, 2, 10, NINE, 0),
        ];
        assert_eq!(choose(&target(1, 10), &c, None), None);
        assert_eq!(choose(&target(1, 10), &[], None), None);
    }

    #[test]
    fn a_second_dose_fits_from_the_interval_to_7_days_after() {
        assert!(second_dose_fits(day(1), 21, day(22)));
        assert!(second_dose_fits(day(1), 21, day(29)));
        assert!(!second_dose_fits(day(1), 21, day(21)));
        assert!(!second_dose_fits(day(1), 21, day(30)));
    }

    #[test]
    fn patches_and_shifts_are_checked() {
        let p = |capacity, cancelled| {
            SlotPatch::try_from(SlotPatchRequest {
                capacity,
                cancelled,
            })
        };
        assert_eq!(
            p(None, None).unwrap(),
            SlotPatch {
                capacity: None,
                cancel: false
            },
            "an empty patch changes nothing, as a cohort's does"
        );
        assert!(p(Some(-1), None).is_err());
        assert_eq!(
            p(Some(3), None).unwrap(),
            SlotPatch {
                capacity: Some(3),
                cancel: false
            }
        );
        assert!(p(None, Some(true)).unwrap().cancel);
        let s = |v: &str, d| {
            Shift::try_from(ShiftRequest {
                vaccine: v.into(),
                second_dose_shift_days: d,
            })
        };
        assert!(s("Pfizer", 0).is_err());
        assert!(s("Pfizer", -14).is_err());
        assert!(s("", 14).is_err());
        assert_eq!(s("Pfizer", 14).unwrap().days, 14);
    }
}
