//! The queries of leftover doses (API 1.1), both backends: posting a day's leftovers, sign-ups,
//! the offer line, accepting and leaving. Writes run only in the `BookingStore`'s transaction
//! (`Write::Leftover`); every rule that must hold across nodes is a conditional update here:
//! a dose is a place of a leftover slot (`slots.leftover_until` set) taken by
//! `booked < capacity`, a sign-up is offered only while it is still `waiting`, and the unique
//! indexes of the migration keep one live sign-up and one held offer per citizen.

use super::models::{BookingRow, NewBookingRow, NewCitizenRow};
use super::queries;
use super::schema::{
    bookings, citizens, leftover_entries, leftover_entry_centers, leftover_offers, slots,
};
use super::Conn;
use crate::domain::booking::STATE_CONFIRMED;
use crate::run;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};

pub const ENTRY_WAITING: &str = "waiting";
pub const ENTRY_OFFERED: &str = "offered";
pub const ENTRY_BOOKED: &str = "booked";
pub const ENTRY_LAPSED: &str = "lapsed";
pub const ENTRY_CANCELLED: &str = "cancelled";
pub const ENTRY_EXPIRED: &str = "expired";
const LIVE: [&str; 2] = [ENTRY_WAITING, ENTRY_OFFERED];

pub const OFFER_HELD: &str = "held";
const OFFER_ACCEPTED: &str = "accepted";
const OFFER_LAPSED: &str = "lapsed";
const OFFER_DECLINED: &str = "declined";

/// One center's leftovers of one day: a slot row of its own.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct LeftoverRow {
    pub id: i32,
    pub center_id: i32,
    pub vaccine: String,
    /// The doses posted.
    pub doses: i32,
    /// Doses booked or under a held offer.
    pub taken: i32,
    pub until: Option<i64>,
    pub date: String,
    pub start_time: String,
}

impl LeftoverRow {
    /// Doses neither booked nor under a held offer.
    pub fn remaining(&self) -> i64 {
        i64::from(self.doses - self.taken).max(0)
    }

    pub fn until(&self) -> i64 {
        self.until.unwrap_or(0)
    }
}

/// Leftovers an operator posts.
#[derive(Debug, Clone)]
pub struct NewLeftover {
    pub center_id: i32,
    pub vaccine: String,
    pub doses: i32,
    pub until: i64,
    /// `YYYY-MM-DD`, today.
    pub date: String,
    /// `HH:MM` now and at `until`: the first dose's time as a booking shows it.
    pub start_time: String,
    pub end_time: String,
}

/// A sign-up as the store writes it.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub citizen_key: String,
    pub cohort_id: i32,
    pub ticket_seq: i64,
    pub masked_name: String,
    pub birth_date: String,
    /// `YYYY-MM-DD`, today.
    pub day: String,
    pub created_at: i64,
    /// The phone given at verification, sealed: where its offers are sent.
    pub phone_sealed: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignUpOutcome {
    Entry { id: i32, position: i64 },
    AlreadyWaiting,
}

/// A held offer.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct OfferRow {
    pub id: i32,
    pub entry_id: i32,
    pub slot_id: i32,
    pub center_id: i32,
    pub expires_at: i64,
}

/// What a dispatch of one center's line did, and how the center stands after it.
#[derive(Debug, Clone, Default)]
pub struct Dispatched {
    /// Offers made: (entry, slot, expires_at).
    pub offered: Vec<(i32, i32, i64)>,
    /// Sign-ups whose offer lapsed.
    pub lapsed: Vec<i32>,
    /// The center's leftovers of the day.
    pub leftovers: Vec<LeftoverRow>,
    /// The earliest expiry of an offer still held at the center.
    pub next_expiry: Option<i64>,
    /// The dispatch stopped at `MAX_OFFERS_PER_DISPATCH` with doses and sign-ups perhaps
    /// left: the line runs again at once.
    pub more: bool,
}

/// Offers one dispatch makes at most: a dispatch runs on the writer's thread inside a batch
/// that citizens' bookings share, so a posting of thousands of doses is offered in runs that
/// follow each other at once rather than in one long transaction.
pub const MAX_OFFERS_PER_DISPATCH: usize = 64;

#[derive(Debug, Clone)]
pub enum AcceptOutcome {
    Booked {
        booking: Box<BookingRow>,
        /// The live booking the citizen held before, cancelled in the same transaction.
        cancelled: Option<Box<BookingRow>>,
    },
    /// No held offer (none, lapsed, or another one than the caller knew).
    NoOffer,
    /// The second dose's slot had no place left on disk.
    NoSecondDose,
}

/// A sign-up's standing, for its citizen.
#[derive(Debug, Clone)]
pub struct EntryStatus {
    pub state: String,
    pub day: String,
    pub offer: Option<(OfferRow, String, String)>,
    pub booking: Option<BookingRow>,
    pub position: i64,
    pub masked_name: String,
}

fn is_unique_violation(e: &Error) -> bool {
    matches!(
        e,
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

// ---- reads ----

/// A center's leftovers of `day`.
pub fn center_leftovers(
    conn: &mut Conn,
    center_id: i32,
    day: &str,
) -> Result<Vec<LeftoverRow>, Error> {
    run!(conn, c => slots::table
        .filter(slots::center_id.eq(center_id))
        .filter(slots::date.eq(day))
        .filter(slots::leftover_until.is_not_null())
        .order(slots::id)
        .select((
            slots::id,
            slots::center_id,
            slots::vaccine,
            slots::capacity,
            slots::booked,
            slots::leftover_until,
            slots::date,
            slots::start_time,
        ))
        .load(c))
}

/// The offer a sign-up holds, if any, with its vaccine and the time its dose is given from.
pub fn held_offer(
    conn: &mut Conn,
    entry_id: i32,
) -> Result<Option<(OfferRow, String, String)>, Error> {
    run!(conn, c => leftover_offers::table
        .inner_join(slots::table)
        .filter(leftover_offers::entry_id.eq(entry_id))
        .filter(leftover_offers::state.eq(OFFER_HELD))
        .select((
            (
                leftover_offers::id,
                leftover_offers::entry_id,
                leftover_offers::slot_id,
                leftover_offers::center_id,
                leftover_offers::expires_at,
            ),
            slots::vaccine,
            slots::start_time,
        ))
        .first(c)
        .optional())
}

/// Who signed up (as a booking needs it), and the day: (citizen key, cohort, ticket seq,
/// masked name, birth date, day).
pub type EntryWho = (String, i32, i64, String, String, String);

pub fn entry_who(conn: &mut Conn, entry_id: i32) -> Result<Option<EntryWho>, Error> {
    run!(conn, c => leftover_entries::table
        .find(entry_id)
        .select((
            leftover_entries::citizen_key,
            leftover_entries::cohort_id,
            leftover_entries::ticket_seq,
            leftover_entries::masked_name,
            leftover_entries::birth_date,
            leftover_entries::day,
        ))
        .first(c)
        .optional())
}

/// The centers a sign-up waits for.
pub fn entry_centers(conn: &mut Conn, entry_id: i32) -> Result<Vec<i32>, Error> {
    run!(conn, c => leftover_entry_centers::table
        .filter(leftover_entry_centers::entry_id.eq(entry_id))
        .order(leftover_entry_centers::center_id)
        .select(leftover_entry_centers::center_id)
        .load(c))
}

/// Where a waiting sign-up stands: the fewest waiting sign-ups up to and including it at any
/// of its centers (the next to be offered is 1).
pub fn position(conn: &mut Conn, entry_id: i32, day: &str) -> Result<i64, Error> {
    let mut best: Option<i64> = None;
    for center in entry_centers(conn, entry_id)? {
        let n: i64 = run!(conn, c => leftover_entry_centers::table
            .inner_join(leftover_entries::table)
            .filter(leftover_entry_centers::center_id.eq(center))
            .filter(leftover_entries::state.eq(ENTRY_WAITING))
            .filter(leftover_entries::day.eq(day))
            .filter(leftover_entries::id.le(entry_id))
            .count()
            .get_result(c))?;
        best = Some(best.map_or(n, |b| b.min(n)));
    }
    Ok(best.unwrap_or(0))
}

/// A sign-up's standing; `None` if there is no such sign-up.
pub fn entry_status(conn: &mut Conn, entry_id: i32) -> Result<Option<EntryStatus>, Error> {
    type Found = (String, String, Option<String>, String);
    let found: Option<Found> = run!(conn, c => leftover_entries::table
        .find(entry_id)
        .select((
            leftover_entries::state,
            leftover_entries::day,
            leftover_entries::booking_code,
            leftover_entries::masked_name,
        ))
        .first(c)
        .optional())?;
    let Some((state, day, code, masked_name)) = found else {
        return Ok(None);
    };
    let offer = if state == ENTRY_OFFERED {
        held_offer(conn, entry_id)?
    } else {
        None
    };
    let booking = match code {
        Some(code) => run!(conn, c => bookings::table
            .filter(bookings::code.eq(code))
            .select(BookingRow::as_select())
            .first(c)
            .optional())?,
        None => None,
    };
    let position = if state == ENTRY_WAITING {
        position(conn, entry_id, &day)?
    } else {
        0
    };
    Ok(Some(EntryStatus {
        state,
        day,
        offer,
        booking,
        position,
        masked_name,
    }))
}

/// The slot rows a leftover write touches, for `queries::lock_slots` (PostgreSQL locks them
/// first, in ascending id order, like every batch).
pub fn slots_to_lock(conn: &mut Conn, w: &LeftoverWrite) -> Result<Vec<i32>, Error> {
    Ok(match w {
        LeftoverWrite::Post(_) => Vec::new(),
        LeftoverWrite::SignUp { .. } => Vec::new(),
        LeftoverWrite::Dispatch { center_id, day, .. } => center_leftovers(conn, *center_id, day)?
            .into_iter()
            .map(|l| l.id)
            .collect(),
        LeftoverWrite::Leave { entry_id, .. } => held_offer(conn, *entry_id)?
            .map(|(o, ..)| vec![o.slot_id])
            .unwrap_or_default(),
        LeftoverWrite::Accept {
            offer_slot_id,
            booking,
            ..
        } => {
            let mut ids = vec![*offer_slot_id, booking.second_slot_id];
            if let Some(live) = live_booking(conn, &booking.citizen_key)? {
                ids.extend([live.first_slot_id, live.second_slot_id]);
            }
            ids
        }
    })
}

fn live_booking(conn: &mut Conn, citizen_key: &str) -> Result<Option<BookingRow>, Error> {
    run!(conn, c => bookings::table
        .filter(bookings::citizen_key.eq(citizen_key))
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .select(BookingRow::as_select())
        .first(c)
        .optional())
}

// ---- writes (inside the store's transaction) ----

/// A change to the leftovers, made durable by the `BookingStore`.
#[derive(Debug, Clone)]
pub enum LeftoverWrite {
    Post(NewLeftover),
    SignUp {
        entry: NewEntry,
        centers: Vec<i32>,
    },
    /// Lapses the center's offers held past their expiry, then offers each dose neither
    /// booked nor offered to the next waiting sign-up, one each.
    Dispatch {
        center_id: i32,
        day: String,
        /// Offers with `expires_at <= now` lapse.
        now: i64,
        /// When the offers made now expire: at least the hold from now, in whole seconds.
        expires_at: i64,
    },
    /// The sign-up ends (`cancelled`); an offer it held is given back.
    Leave {
        entry_id: i32,
    },
    /// The held offer becomes the booking's first dose; the second dose takes a place of
    /// `booking.second_slot_id`.
    Accept {
        entry_id: i32,
        offer_slot_id: i32,
        citizen: Box<NewCitizenRow>,
        booking: Box<NewBookingRow>,
        now: i64,
    },
}

/// What a committed leftover write produced.
#[derive(Debug, Clone)]
pub enum LeftoverWritten {
    Posted(LeftoverRow),
    SignedUp(SignUpOutcome),
    Dispatched(Dispatched),
    /// `Some(center)` if an offer was given back there; `None` if nothing was live. `true`:
    /// the sign-up was live (or already cancelled) and is cancelled now.
    Left(bool, Option<i32>),
    Accepted(AcceptOutcome),
}

pub fn apply(conn: &mut Conn, w: &LeftoverWrite) -> Result<LeftoverWritten, Error> {
    Ok(match w {
        LeftoverWrite::Post(new) => LeftoverWritten::Posted(post(conn, new)?),
        LeftoverWrite::SignUp { entry, centers } => {
            LeftoverWritten::SignedUp(sign_up(conn, entry, centers)?)
        }
        LeftoverWrite::Dispatch {
            center_id,
            day,
            now,
            expires_at,
        } => LeftoverWritten::Dispatched(dispatch(conn, *center_id, day, *now, *expires_at)?),
        LeftoverWrite::Leave { entry_id } => {
            let (left, center) = leave(conn, *entry_id)?;
            LeftoverWritten::Left(left, center)
        }
        LeftoverWrite::Accept {
            entry_id,
            offer_slot_id,
            citizen,
            booking,
            now,
        } => LeftoverWritten::Accepted(accept(
            conn,
            *entry_id,
            *offer_slot_id,
            citizen,
            booking,
            *now,
        )?),
    })
}

fn post(conn: &mut Conn, new: &NewLeftover) -> Result<LeftoverRow, Error> {
    let id: i32 = run!(conn, c => diesel::insert_into(slots::table)
        .values((
            slots::center_id.eq(new.center_id),
            slots::date.eq(&new.date),
            slots::start_time.eq(&new.start_time),
            slots::end_time.eq(&new.end_time),
            slots::capacity.eq(new.doses),
            slots::vaccine.eq(&new.vaccine),
            slots::booked.eq(0),
            slots::leftover_until.eq(Some(new.until)),
        ))
        .returning(slots::id)
        .get_result(c))?;
    Ok(LeftoverRow {
        id,
        center_id: new.center_id,
        vaccine: new.vaccine.clone(),
        doses: new.doses,
        taken: 0,
        until: Some(new.until),
        date: new.date.clone(),
        start_time: new.start_time.clone(),
    })
}

/// Gives a held offer's dose back; `false` if it was no longer held.
fn end_offer(conn: &mut Conn, offer: &OfferRow, state: &str) -> Result<bool, Error> {
    let n = run!(conn, c => diesel::update(leftover_offers::table.find(offer.id))
        .filter(leftover_offers::state.eq(OFFER_HELD))
        .set(leftover_offers::state.eq(state))
        .execute(c))?;
    if n == 1 {
        run!(conn, c => diesel::update(slots::table.find(offer.slot_id))
            .filter(slots::booked.gt(0))
            .set(slots::booked.eq(slots::booked - 1))
            .execute(c))?;
    }
    Ok(n == 1)
}

fn sign_up(conn: &mut Conn, entry: &NewEntry, centers: &[i32]) -> Result<SignUpOutcome, Error> {
    // A sign-up of an earlier day ends with its day; an offer it held is given back.
    let old: Vec<i32> = run!(conn, c => leftover_entries::table
        .filter(leftover_entries::citizen_key.eq(&entry.citizen_key))
        .filter(leftover_entries::state.eq_any(LIVE))
        .filter(leftover_entries::day.lt(&entry.day))
        .select(leftover_entries::id)
        .load(c))?;
    for id in old {
        if let Some((offer, ..)) = held_offer(conn, id)? {
            end_offer(conn, &offer, OFFER_LAPSED)?;
        }
        run!(conn, c => diesel::update(leftover_entries::table.find(id))
            .set(leftover_entries::state.eq(ENTRY_EXPIRED))
            .execute(c))?;
    }
    let inserted = conn.savepoint(|sp| {
        run!(sp, c => diesel::insert_into(leftover_entries::table)
            .values((
                leftover_entries::citizen_key.eq(&entry.citizen_key),
                leftover_entries::cohort_id.eq(entry.cohort_id),
                leftover_entries::ticket_seq.eq(entry.ticket_seq),
                leftover_entries::masked_name.eq(&entry.masked_name),
                leftover_entries::birth_date.eq(&entry.birth_date),
                leftover_entries::day.eq(&entry.day),
                leftover_entries::state.eq(ENTRY_WAITING),
                leftover_entries::created_at.eq(entry.created_at),
                leftover_entries::phone_sealed.eq(&entry.phone_sealed),
            ))
            .returning(leftover_entries::id)
            .get_result::<i32>(c))
    });
    let id = match inserted {
        Ok(id) => id,
        Err(e) if is_unique_violation(&e) => return Ok(SignUpOutcome::AlreadyWaiting),
        Err(e) => return Err(e),
    };
    for center in centers {
        run!(conn, c => diesel::insert_into(leftover_entry_centers::table)
            .values((
                leftover_entry_centers::entry_id.eq(id),
                leftover_entry_centers::center_id.eq(*center),
            ))
            .execute(c))?;
    }
    let position = position(conn, id, &entry.day)?;
    Ok(SignUpOutcome::Entry { id, position })
}

/// The first waiting sign-up of the day for this center, after `after`.
fn next_waiting(
    conn: &mut Conn,
    center_id: i32,
    day: &str,
    after: i32,
) -> Result<Option<i32>, Error> {
    run!(conn, c => leftover_entry_centers::table
        .inner_join(leftover_entries::table)
        .filter(leftover_entry_centers::center_id.eq(center_id))
        .filter(leftover_entries::state.eq(ENTRY_WAITING))
        .filter(leftover_entries::day.eq(day))
        .filter(leftover_entries::id.gt(after))
        .order(leftover_entries::id)
        .select(leftover_entries::id)
        .first(c)
        .optional())
}

fn dispatch(
    conn: &mut Conn,
    center_id: i32,
    day: &str,
    now: i64,
    expires_at: i64,
) -> Result<Dispatched, Error> {
    let mut out = Dispatched::default();
    let expired: Vec<OfferRow> = run!(conn, c => leftover_offers::table
        .filter(leftover_offers::center_id.eq(center_id))
        .filter(leftover_offers::state.eq(OFFER_HELD))
        .filter(leftover_offers::expires_at.le(now))
        .order(leftover_offers::id)
        .select((
            leftover_offers::id,
            leftover_offers::entry_id,
            leftover_offers::slot_id,
            leftover_offers::center_id,
            leftover_offers::expires_at,
        ))
        .load(c))?;
    for offer in expired {
        if end_offer(conn, &offer, OFFER_LAPSED)? {
            run!(conn, c => diesel::update(leftover_entries::table.find(offer.entry_id))
                .filter(leftover_entries::state.eq(ENTRY_OFFERED))
                .set(leftover_entries::state.eq(ENTRY_LAPSED))
                .execute(c))?;
            out.lapsed.push(offer.entry_id);
        }
    }
    let mut after = 0;
    'doses: for leftover in center_leftovers(conn, center_id, day)? {
        if leftover.until() <= now {
            continue;
        }
        let mut room = leftover.remaining();
        while room > 0 {
            if out.offered.len() >= MAX_OFFERS_PER_DISPATCH {
                out.more = true;
                break 'doses;
            }
            let Some(entry) = next_waiting(conn, center_id, day, after)? else {
                break 'doses;
            };
            after = entry;
            // Another node may have offered this sign-up a dose of another center: only the
            // update that still finds it waiting offers it.
            let claimed = run!(conn, c => diesel::update(leftover_entries::table.find(entry))
                .filter(leftover_entries::state.eq(ENTRY_WAITING))
                .set(leftover_entries::state.eq(ENTRY_OFFERED))
                .execute(c))?;
            if claimed == 0 {
                continue;
            }
            let taken = run!(conn, c => diesel::update(slots::table.find(leftover.id))
                .filter(slots::booked.lt(slots::capacity))
                .set(slots::booked.eq(slots::booked + 1))
                .execute(c))?;
            if taken == 0 {
                run!(conn, c => diesel::update(leftover_entries::table.find(entry))
                    .set(leftover_entries::state.eq(ENTRY_WAITING))
                    .execute(c))?;
                after = entry - 1;
                break;
            }
            // Never held past the instant the doses are usable until.
            let expires_at = expires_at.min(leftover.until());
            run!(conn, c => diesel::insert_into(leftover_offers::table)
                .values((
                    leftover_offers::entry_id.eq(entry),
                    leftover_offers::slot_id.eq(leftover.id),
                    leftover_offers::center_id.eq(center_id),
                    leftover_offers::offered_at.eq(now),
                    leftover_offers::expires_at.eq(expires_at),
                    leftover_offers::state.eq(OFFER_HELD),
                ))
                .execute(c))?;
            super::outbox::enqueue_leftover_offer(conn, entry, center_id, expires_at, now)?;
            out.offered.push((entry, leftover.id, expires_at));
            room -= 1;
        }
    }
    out.leftovers = center_leftovers(conn, center_id, day)?;
    out.next_expiry = run!(conn, c => leftover_offers::table
        .filter(leftover_offers::center_id.eq(center_id))
        .filter(leftover_offers::state.eq(OFFER_HELD))
        .select(diesel::dsl::min(leftover_offers::expires_at))
        .first::<Option<i64>>(c))?;
    Ok(out)
}

fn leave(conn: &mut Conn, entry_id: i32) -> Result<(bool, Option<i32>), Error> {
    // The sign-up's row first: on PostgreSQL this waits for another node's dispatch that is
    // offering it a dose, and the offer read after it then sees that offer and gives it back
    // (read first, the offer would stay held for a cancelled sign-up until it lapsed).
    let n = run!(conn, c => diesel::update(leftover_entries::table.find(entry_id))
        .filter(leftover_entries::state.eq_any(LIVE))
        .set(leftover_entries::state.eq(ENTRY_CANCELLED))
        .execute(c))?;
    let mut center = None;
    if let Some((offer, ..)) = held_offer(conn, entry_id)? {
        if end_offer(conn, &offer, OFFER_DECLINED)? {
            center = Some(offer.center_id);
        }
    }
    let already: bool = run!(conn, c => leftover_entries::table
        .find(entry_id)
        .select(leftover_entries::state)
        .first::<String>(c)
        .optional())?
    .is_some_and(|s| s == ENTRY_CANCELLED);
    Ok((n == 1 || already, center))
}

fn accept(
    conn: &mut Conn,
    entry_id: i32,
    offer_slot_id: i32,
    citizen: &NewCitizenRow,
    booking: &NewBookingRow,
    now: i64,
) -> Result<AcceptOutcome, Error> {
    let Some((offer, ..)) = held_offer(conn, entry_id)? else {
        return Ok(AcceptOutcome::NoOffer);
    };
    if offer.slot_id != offer_slot_id || offer.expires_at <= now {
        return Ok(AcceptOutcome::NoOffer);
    }
    // The offer is claimed first, by the update that still finds it held: another node's
    // dispatch may have lapsed it since it was read. Its place is the first dose's now: it
    // stays taken.
    let claimed = run!(conn, c => diesel::update(leftover_offers::table.find(offer.id))
        .filter(leftover_offers::state.eq(OFFER_HELD))
        .set(leftover_offers::state.eq(OFFER_ACCEPTED))
        .execute(c))?;
    if claimed == 0 {
        return Ok(AcceptOutcome::NoOffer);
    }
    let second = run!(conn, c => diesel::update(slots::table.find(booking.second_slot_id))
        .filter(slots::booked.lt(slots::capacity))
        .set(slots::booked.eq(slots::booked + 1))
        .execute(c))?;
    if second == 0 {
        // Held again, as it was: this transaction holds the offer's row.
        run!(conn, c => diesel::update(leftover_offers::table.find(offer.id))
            .set(leftover_offers::state.eq(OFFER_HELD))
            .execute(c))?;
        return Ok(AcceptOutcome::NoSecondDose);
    }
    let cancelled = match live_booking(conn, &citizen.key)? {
        Some(live) => queries::cancel_booking(conn, &live.code, now)?.map(Box::new),
        None => None,
    };
    // The sign-up's phone (given at its verification) is the booking's from now on.
    let phone: Option<String> = match &citizen.phone_sealed {
        Some(p) => Some(p.clone()),
        None => run!(conn, c => leftover_entries::table
            .find(entry_id)
            .select(leftover_entries::phone_sealed)
            .first::<Option<String>>(c))?,
    };
    let citizen = &NewCitizenRow {
        phone_sealed: phone.clone(),
        ..citizen.clone()
    };
    run!(conn, c => diesel::insert_into(citizens::table)
        .values(citizen)
        .on_conflict(citizens::key)
        .do_nothing()
        .execute(c))?;
    if phone.is_some() {
        run!(conn, c => diesel::update(citizens::table.find(&citizen.key))
            .set(citizens::phone_sealed.eq(&phone))
            .execute(c))?;
    }
    let row: BookingRow = run!(conn, c => diesel::insert_into(bookings::table)
        .values(booking)
        .returning(BookingRow::as_returning())
        .get_result(c))?;
    super::outbox::enqueue(conn, &super::outbox::NewMessage::booked(&row, phone))?;
    run!(conn, c => diesel::update(leftover_entries::table.find(entry_id))
        .set((
            leftover_entries::state.eq(ENTRY_BOOKED),
            leftover_entries::booking_code.eq(&row.code),
        ))
        .execute(c))?;
    Ok(AcceptOutcome::Booked {
        booking: Box::new(row),
        cancelled,
    })
}
