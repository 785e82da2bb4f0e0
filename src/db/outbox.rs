//! The outbox of notifications (API 1.1), both backends. Messages are enqueued by the writes
//! they tell of, inside the `BookingStore`'s transaction (`enqueue`, `enqueue_many`): a
//! message is on disk if and only if its change committed. The sender (`actors::notifier`)
//! claims due messages with a lease (`claim`: a conditional update, `FOR UPDATE SKIP LOCKED`
//! on PostgreSQL), so that among nodes sharing one database a message is being sent by one
//! node at a time, and one whose node died is taken again once its lease has run out; it then
//! records each attempt (`sent`, `retry_later`, `give_up`). Its housekeeping writes the
//! reminders of tomorrow's doses (`scan_reminders`) and forgets phone numbers nobody needs
//! any more (`forget_phones`). The sender's statements run on pooled connections of their
//! own, outside the writer's group commit, each a short transaction: the booking hot path
//! never waits for a delivery.

use super::models::BookingRow;
use super::queries::fixed;
use super::schema::{bookings, citizens, leftover_entries, outbox};
use super::Conn;
use crate::domain::booking::{STATE_CONFIRMED, STATE_NEEDS_REBOOKING};
use crate::domain::notification::{self as note, Kind, STATE_FAILED, STATE_PENDING, STATE_SENT};
use crate::run;
use diesel::prelude::*;
use diesel::result::Error;

/// Rows at most in one statement (PostgreSQL's arrays, the reminders' pages).
const ROWS_PER_STATEMENT: usize = 1000;

/// A message to enqueue. The one function any transaction calls (`enqueue`) takes it: the
/// supply changes' "moved" and "needs_rebooking" build one with `NewMessage::new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub kind: Kind,
    pub booking_code: Option<String>,
    /// Reminders only: the dose (1 or 2). With it the message is written once per (kind,
    /// booking, dose) however often it is enqueued.
    pub dose: Option<i32>,
    /// The recipient's phone, sealed (`domain::phone`); `None`: nobody to send to (a session
    /// from before phones were kept), and the message ends `failed` at its first attempt.
    pub to_sealed: Option<String>,
    pub text: String,
    /// Seconds.
    pub created_at: i64,
}

impl NewMessage {
    pub fn new(
        kind: Kind,
        booking_code: Option<&str>,
        to_sealed: Option<String>,
        text: String,
        now: i64,
    ) -> Self {
        Self {
            kind,
            booking_code: booking_code.map(str::to_string),
            dose: None,
            to_sealed,
            text,
            created_at: now,
        }
    }

    pub fn booked(row: &BookingRow, to_sealed: Option<String>) -> Self {
        let text = note::booked_text(
            &row.code,
            (&row.first_date, &row.first_start),
            (&row.second_date, &row.second_start),
        );
        Self::new(
            Kind::Booked,
            Some(&row.code),
            to_sealed,
            text,
            row.created_at,
        )
    }

    pub fn cancelled(row: &BookingRow, to_sealed: Option<String>, now: i64) -> Self {
        Self::new(
            Kind::Cancelled,
            Some(&row.code),
            to_sealed,
            note::cancelled_text(&row.code),
            now,
        )
    }
}

/// The outbox row an insert writes (`None` written as NULL, so its SQL text is fixed).
#[derive(Insertable)]
#[diesel(table_name = outbox, treat_none_as_default_value = false)]
struct OutboxInsert<'a> {
    id: &'a str,
    kind: &'a str,
    booking_code: Option<&'a str>,
    dose: Option<i32>,
    to_sealed: Option<&'a str>,
    body: &'a str,
    state: &'a str,
    attempts: i32,
    created_at: i64,
    next_attempt_at: i64,
    lease_owner: Option<&'a str>,
    lease_until: i64,
    done_at: Option<i64>,
}

/// The key of the outbox insert in diesel's statement cache (`queries::fixed`).
enum InsertOutbox {}

/// Puts one message in the outbox, in the caller's transaction; its id.
pub fn enqueue(conn: &mut Conn, msg: &NewMessage) -> Result<String, Error> {
    Ok(enqueue_many(conn, std::slice::from_ref(msg))?
        .pop()
        .unwrap_or_default())
}

/// Puts messages in the outbox, in the caller's transaction, the batch's way: on PostgreSQL
/// one prepared statement over arrays per thousand, on SQLite one cached insert a row. A
/// reminder already there (same booking and dose) is skipped. Their ids, in order.
pub fn enqueue_many(conn: &mut Conn, msgs: &[NewMessage]) -> Result<Vec<String>, Error> {
    use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
    let ids: Vec<String> = msgs.iter().map(|_| note::new_id()).collect();
    if msgs.is_empty() {
        return Ok(ids);
    }
    match conn {
        Conn::Postgres(c) => {
            for (chunk, ids) in msgs
                .chunks(ROWS_PER_STATEMENT)
                .zip(ids.chunks(ROWS_PER_STATEMENT))
            {
                diesel::sql_query(
                    "INSERT INTO outbox (id, kind, booking_code, dose, to_sealed, body, state, \
                     attempts, created_at, next_attempt_at, lease_until) \
                     SELECT u.id, u.kind, u.code, u.dose, u.dst, u.body, 'pending', 0, u.at, \
                     u.at * 1000, 0 \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], \
                     $6::text[], $7::int8[]) AS u(id, kind, code, dose, dst, body, at) \
                     ON CONFLICT DO NOTHING",
                )
                .bind::<Array<Text>, _>(ids.to_vec())
                .bind::<Array<Text>, _>(chunk.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
                .bind::<Array<Nullable<Text>>, _>(
                    chunk
                        .iter()
                        .map(|m| m.booking_code.clone())
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Nullable<Integer>>, _>(
                    chunk.iter().map(|m| m.dose).collect::<Vec<_>>(),
                )
                .bind::<Array<Nullable<Text>>, _>(
                    chunk
                        .iter()
                        .map(|m| m.to_sealed.clone())
                        .collect::<Vec<_>>(),
                )
                .bind::<Array<Text>, _>(chunk.iter().map(|m| m.text.clone()).collect::<Vec<_>>())
                .bind::<Array<BigInt>, _>(chunk.iter().map(|m| m.created_at).collect::<Vec<_>>())
                .execute(*c)?;
            }
        }
        Conn::Sqlite(c) => {
            for (m, id) in msgs.iter().zip(&ids) {
                let row = OutboxInsert {
                    id,
                    kind: m.kind.as_str(),
                    booking_code: m.booking_code.as_deref(),
                    dose: m.dose,
                    to_sealed: m.to_sealed.as_deref(),
                    body: &m.text,
                    state: STATE_PENDING,
                    attempts: 0,
                    created_at: m.created_at,
                    next_attempt_at: m.created_at * 1000,
                    lease_owner: None,
                    lease_until: 0,
                    done_at: None,
                };
                fixed::<InsertOutbox, _>(
                    diesel::insert_into(outbox::table)
                        .values(&row)
                        .on_conflict_do_nothing(),
                )
                .execute(*c)?;
            }
        }
    }
    Ok(ids)
}

/// The sealed phone kept for a citizen, if any.
pub fn phone_of(conn: &mut Conn, citizen_key: &str) -> Result<Option<String>, Error> {
    Ok(run!(conn, c => citizens::table
        .find(citizen_key)
        .select(citizens::phone_sealed)
        .first::<Option<String>>(c)
        .optional())?
    .flatten())
}

/// `phone_of` for many citizens in one statement: each key's sealed phone (keys without a
/// citizen row are left out).
pub fn phones_of(
    conn: &mut Conn,
    keys: &[String],
) -> Result<std::collections::HashMap<String, Option<String>>, Error> {
    let rows: Vec<(String, Option<String>)> = run!(conn, c => citizens::table
        .filter(citizens::key.eq_any(keys))
        .select((citizens::key, citizens::phone_sealed))
        .load(c))?;
    Ok(rows.into_iter().collect())
}

/// The offer of a leftover dose to a sign-up, told to the phone it signed up with.
pub fn enqueue_leftover_offer(
    conn: &mut Conn,
    entry_id: i32,
    center_id: i32,
    expires_at: i64,
    now: i64,
) -> Result<String, Error> {
    let phone: Option<String> = run!(conn, c => leftover_entries::table
        .find(entry_id)
        .select(leftover_entries::phone_sealed)
        .first::<Option<String>>(c)
        .optional())?
    .flatten();
    let minutes = ((expires_at - now).max(0) + 59) / 60;
    enqueue(
        conn,
        &NewMessage::new(
            Kind::LeftoverOffer,
            None,
            phone,
            note::leftover_offer_text(center_id, minutes),
            now,
        ),
    )
}

/// A message the sender holds the lease of.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub kind: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub booking_code: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub to_sealed: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub body: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub created_at: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
}

/// Takes the lease of up to `limit` due messages for `owner` until `now_ms + lease_ms`: only
/// messages pending, due, and under no lease still running. One statement: on SQLite the
/// database's one writer makes it atomic; on PostgreSQL `FOR UPDATE SKIP LOCKED` leaves the
/// rows another node is claiming to it, and the outer conditions are checked again on the
/// row as it is when locked.
pub fn claim(
    conn: &mut Conn,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, Error> {
    use diesel::sql_types::{BigInt, Text};
    const RETURNING: &str = "RETURNING outbox.id, outbox.kind, outbox.booking_code, \
         outbox.to_sealed, outbox.body, outbox.created_at, outbox.attempts";
    match conn {
        // A materialized CTE, not `id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`: the
        // planner may run such a subquery more than once, and with SKIP LOCKED each run finds
        // other rows, so more than `n` were claimed (the two-senders test caught it).
        Conn::Postgres(c) => diesel::sql_query(format!(
            "WITH picked AS MATERIALIZED (SELECT id FROM outbox WHERE state = 'pending' \
             AND next_attempt_at <= $3 AND lease_until <= $3 ORDER BY next_attempt_at \
             LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE outbox SET lease_owner = $1, lease_until = $2 FROM picked \
             WHERE outbox.id = picked.id AND outbox.state = 'pending' \
             AND outbox.lease_until <= $3 {RETURNING}"
        ))
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(now_ms + lease_ms)
        .bind::<BigInt, _>(now_ms)
        .bind::<BigInt, _>(limit)
        .load(*c),
        Conn::Sqlite(c) => diesel::sql_query(format!(
            "UPDATE outbox SET lease_owner = ?, lease_until = ? \
             WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' \
             AND next_attempt_at <= ? AND lease_until <= ? ORDER BY next_attempt_at LIMIT ?) \
             {RETURNING}"
        ))
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(now_ms + lease_ms)
        .bind::<BigInt, _>(now_ms)
        .bind::<BigInt, _>(now_ms)
        .bind::<BigInt, _>(limit)
        .load(*c),
    }
}

/// Delivered: `sent`, and the copy of the phone forgotten, for many at once (the sender's
/// batch of the last 100 ms), in one statement per thousand, so that a message costs the
/// database a share of one commit rather than one of its own. Whoever delivered them says so,
/// even past its lease: they did reach the provider. How many were still pending.
pub fn sent_many(conn: &mut Conn, ids: &[String], now_ms: i64) -> Result<usize, Error> {
    let mut n = 0;
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        n += run!(conn, c => diesel::update(outbox::table)
            .filter(outbox::id.eq_any(chunk))
            .filter(outbox::state.eq(STATE_PENDING))
            .set((
                outbox::state.eq(STATE_SENT),
                outbox::attempts.eq(outbox::attempts + 1),
                outbox::to_sealed.eq(None::<String>),
                outbox::done_at.eq(Some(now_ms)),
                outbox::lease_owner.eq(None::<String>),
                outbox::lease_until.eq(0),
            ))
            .execute(c))?;
    }
    Ok(n)
}

/// A failed attempt, to be tried again at `next_ms`; only while `owner` still holds it.
pub fn retry_later(conn: &mut Conn, id: &str, owner: &str, next_ms: i64) -> Result<bool, Error> {
    let n = run!(conn, c => diesel::update(outbox::table.find(id))
        .filter(outbox::state.eq(STATE_PENDING))
        .filter(outbox::lease_owner.eq(owner))
        .set((
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::next_attempt_at.eq(next_ms),
            outbox::lease_owner.eq(None::<String>),
            outbox::lease_until.eq(0),
        ))
        .execute(c))?;
    Ok(n == 1)
}

/// The last attempt failed: `failed`, for good, and its copy of the phone is forgotten.
pub fn give_up(conn: &mut Conn, id: &str, owner: &str, now_ms: i64) -> Result<bool, Error> {
    let n = run!(conn, c => diesel::update(outbox::table.find(id))
        .filter(outbox::state.eq(STATE_PENDING))
        .filter(outbox::lease_owner.eq(owner))
        .set((
            outbox::state.eq(STATE_FAILED),
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::to_sealed.eq(None::<String>),
            outbox::done_at.eq(Some(now_ms)),
            outbox::lease_owner.eq(None::<String>),
            outbox::lease_until.eq(0),
        ))
        .execute(c))?;
    Ok(n == 1)
}

/// A message as the admin endpoint shows it.
#[derive(Debug, Clone, Queryable)]
pub struct MessageRow {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i32,
    pub created_at: i64,
}

/// The messages of a booking, oldest first; `None` if no booking has this code.
pub fn for_booking(conn: &mut Conn, code: &str) -> Result<Option<Vec<MessageRow>>, Error> {
    if super::queries::slots_of_booking(conn, code)?.is_none() {
        return Ok(None);
    }
    run!(conn, c => outbox::table
        .filter(outbox::booking_code.eq(code))
        .order((outbox::created_at, outbox::next_attempt_at, outbox::id))
        .select((
            outbox::id,
            outbox::kind,
            outbox::state,
            outbox::attempts,
            outbox::created_at,
        ))
        .load(c)
        .map(Some))
}

/// Writes the reminder of each dose on `tomorrow` (`YYYY-MM-DD`) of a live booking that has
/// none yet; how many. A reminder is not a change of any booking, so it has no transaction
/// to join: it is written by this scan, and written once, whichever node scans and however
/// often, because (kind, booking, dose) is unique (`outbox_once`) and the insert skips one
/// already there.
pub fn scan_reminders(conn: &mut Conn, tomorrow: &str, now: i64) -> Result<usize, Error> {
    let mut written = 0;
    for dose in [1, 2] {
        loop {
            // The same query over the first dose's columns or the second's.
            macro_rules! due {
                ($c:expr, $date:expr, $start:expr) => {{
                    let already = outbox::table
                        .filter(outbox::booking_code.eq(bookings::code.nullable()))
                        .filter(outbox::kind.eq(Kind::Reminder.as_str()))
                        .filter(outbox::dose.eq(dose));
                    bookings::table
                        .inner_join(citizens::table)
                        .filter(bookings::state.eq(STATE_CONFIRMED))
                        .filter($date.eq(tomorrow))
                        .filter(diesel::dsl::not(diesel::dsl::exists(already)))
                        .order(bookings::id)
                        .limit(ROWS_PER_STATEMENT as i64)
                        .select((bookings::code, $date, $start, citizens::phone_sealed))
                        .load($c)
                }};
            }
            let due: Vec<(String, String, String, Option<String>)> = run!(conn, c => {
                if dose == 1 {
                    due!(c, bookings::first_date, bookings::first_start)
                } else {
                    due!(c, bookings::second_date, bookings::second_start)
                }
            })?;
            if due.is_empty() {
                break;
            }
            let msgs: Vec<NewMessage> = due
                .iter()
                .map(|(code, date, start, phone)| NewMessage {
                    dose: Some(dose),
                    ..NewMessage::new(
                        Kind::Reminder,
                        Some(code),
                        phone.clone(),
                        note::reminder_text(code, dose, date, start),
                        now,
                    )
                })
                .collect();
            enqueue_many(conn, &msgs)?;
            written += msgs.len();
            if due.len() < ROWS_PER_STATEMENT {
                break;
            }
        }
    }
    Ok(written)
}

/// Takes back the reminders of a booking not yet sent, in the caller's transaction: of one
/// dose (it moved: its old day's reminder would name the wrong day) or of both (`None`: the
/// booking was cancelled or needs rebooking, and nothing is due). One being delivered right
/// now may still arrive. A moved dose whose reminder was taken back gets one anew from the
/// scan if its new day is tomorrow (one already sent stays the dose's one). How many.
pub fn drop_pending_reminders(
    conn: &mut Conn,
    code: &str,
    dose: Option<i32>,
) -> Result<usize, Error> {
    drop_pending_reminders_of(conn, &[code.to_string()], dose)
}

/// `drop_pending_reminders` for many bookings in one statement.
pub fn drop_pending_reminders_of(
    conn: &mut Conn,
    codes: &[String],
    dose: Option<i32>,
) -> Result<usize, Error> {
    run!(conn, c => {
        // The partial index `outbox_once` (kind, booking_code, dose) WHERE dose IS NOT NULL.
        let of_bookings = outbox::table
            .filter(outbox::kind.eq(Kind::Reminder.as_str()))
            .filter(outbox::booking_code.eq_any(codes))
            .filter(outbox::dose.is_not_null())
            .filter(outbox::state.eq(STATE_PENDING));
        match dose {
            Some(d) => diesel::delete(of_bookings.filter(outbox::dose.eq(d))).execute(c),
            None => diesel::delete(of_bookings).execute(c),
        }
    })
}

/// Forgets the phone numbers nobody needs any more (`today`: `YYYY-MM-DD`, local): a
/// citizen's once it has no booking live or needing rebooking with a dose today or later (one
/// needing rebooking is still the citizen's open matter: cancelling it sends a message); a
/// sign-up's once it is
/// no longer waiting or offered, or its day has passed. (A pending message keeps its own copy
/// until it is sent or failed.) How many were forgotten.
pub fn forget_phones(conn: &mut Conn, today: &str) -> Result<usize, Error> {
    macro_rules! live {
        () => {
            bookings::table
                .filter(bookings::citizen_key.eq(citizens::key))
                .filter(bookings::state.eq_any([STATE_CONFIRMED, STATE_NEEDS_REBOOKING]))
                .filter(bookings::second_date.ge(today))
        };
    }
    let citizens_n = match conn {
        // One statement would see the bookings as they were when it began: a citizen who books
        // while it waits for their row (the booking renews the phone in the same transaction)
        // would be checked against that old view and lose the phone the new booking's messages
        // need. So the rows are locked first, and then checked by a second statement, which
        // sees every booking committed before the locks were had; a booking after it waits
        // for them and writes its phone again.
        Conn::Postgres(c) => c.transaction(|c| {
            let keys: Vec<String> = citizens::table
                .filter(citizens::phone_sealed.is_not_null())
                .filter(diesel::dsl::not(diesel::dsl::exists(live!())))
                .select(citizens::key)
                .for_update()
                .load(c)?;
            if keys.is_empty() {
                return Ok(0);
            }
            diesel::update(
                citizens::table
                    .filter(citizens::key.eq_any(&keys))
                    .filter(diesel::dsl::not(diesel::dsl::exists(live!()))),
            )
            .set(citizens::phone_sealed.eq(None::<String>))
            .execute(c)
        })?,
        // One writer at a time: the statement and a booking never overlap.
        Conn::Sqlite(c) => diesel::update(
            citizens::table
                .filter(citizens::phone_sealed.is_not_null())
                .filter(diesel::dsl::not(diesel::dsl::exists(live!()))),
        )
        .set(citizens::phone_sealed.eq(None::<String>))
        .execute(*c)?,
    };
    let entries_n = run!(conn, c => diesel::update(
            leftover_entries::table
                .filter(leftover_entries::phone_sealed.is_not_null())
                .filter(
                    leftover_entries::state
                        .ne_all(["waiting", "offered"])
                        .or(leftover_entries::day.lt(today)),
                ),
        )
        .set(leftover_entries::phone_sealed.eq(None::<String>))
        .execute(c))?;
    Ok(citizens_n + entries_n)
}

/// Messages pending, and when the oldest of them was created (seconds).
pub fn pending_stats(conn: &mut Conn) -> Result<(i64, Option<i64>), Error> {
    run!(conn, c => outbox::table
        .filter(outbox::state.eq(STATE_PENDING))
        .select((diesel::dsl::count_star(), diesel::dsl::min(outbox::created_at)))
        .first(c))
}
