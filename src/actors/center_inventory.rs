//! `CenterInventory`: one actor per vaccination center, the only owner of its slots' places.
//! A booking message reserves both doses in memory (check and decrement in one handler, so no
//! interleaving can overbook), then asks the `BookingStore` to make it durable; if the store
//! refuses or fails, the places are given back before the answer goes out.
//!
//! What many requests read (places left, per day and vaccine) is published in `CenterShared`
//! so that listings and the waiting rooms' supply checks never wait in this mailbox.

use super::booking_store::{BookingStore, Persist, StoreError, Write, Written};
use crate::db::models::{BookingRow, NewBookingRow, NewCitizenRow, NewSlotRow};
use crate::db::queries::BookOutcome;
use crate::domain::booking::STATE_CONFIRMED;
use crate::domain::slot::{
    format_time, CenterView, Inventory, NewSlot, Refusal, Slot, SlotView, Supply,
};
use actix::prelude::*;
use chrono::NaiveDate;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a center is, and what it publishes for readers.
#[derive(Debug)]
pub struct CenterShared {
    pub id: i32,
    pub name: String,
    pub region: String,
    pub address: String,
    remaining: AtomicI64,
    supply: Mutex<Supply>,
}

impl CenterShared {
    pub fn new(id: i32, name: String, region: String, address: String) -> Self {
        Self {
            id,
            name,
            region,
            address,
            remaining: AtomicI64::new(0),
            supply: Mutex::default(),
        }
    }

    pub fn remaining(&self) -> i64 {
        self.remaining.load(Ordering::Relaxed)
    }

    pub fn view(&self) -> CenterView {
        CenterView {
            id: self.id,
            name: self.name.clone(),
            region: self.region.clone(),
            address: self.address.clone(),
            remaining: self.remaining(),
        }
    }

    /// Reads the places left per day for one vaccine.
    pub fn with_supply<R>(
        &self,
        vaccine: &str,
        f: impl FnOnce(Option<&std::collections::BTreeMap<NaiveDate, i64>>) -> R,
    ) -> R {
        let supply = self.supply.lock().unwrap_or_else(|e| e.into_inner());
        f(supply.get(vaccine))
    }
}

/// A citizen's booking request as the center needs it.
#[derive(Debug, Clone)]
pub struct BookingRequest {
    pub slot_id: i32,
    pub vaccine: String,
    pub dose_interval_days: u32,
    pub today: NaiveDate,
    pub citizen: NewCitizenRow,
    pub code: String,
    pub cohort_id: i32,
    pub ticket_seq: u64,
    /// The ticket's place in the line (`CohortShared::booking_place`).
    pub queue_index: Option<u64>,
    pub idempotency_key: Option<String>,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookError {
    Refused(Refusal),
    AlreadyBooked,
    Store(StoreError),
}

#[derive(Debug, Clone)]
pub struct Booked {
    pub row: BookingRow,
    /// True when this answers a repeat of an earlier request: nothing new was booked.
    pub repeat: bool,
}

/// Book both doses, starting at a slot of this center.
#[derive(Message)]
#[rtype(result = "Result<Booked, BookError>")]
pub struct Book(pub BookingRequest);

/// Give back the places of a cancelled booking.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub first_slot_id: i32,
    pub second_slot_id: i32,
}

/// Add slots (made durable first); answers them with their ids.
#[derive(Message)]
#[rtype(result = "Result<Vec<SlotView>, StoreError>")]
pub struct AddSlots(pub Vec<NewSlot>);

/// Slots another node created (read by `ClusterSync`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddKnownSlots(pub Vec<crate::db::models::SlotRow>);

/// The places of this center's slots as on disk, booked by every node: (slot, capacity,
/// booked), read after `.0` (sent by `ClusterSync`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SyncPlaces(pub Instant, pub Vec<(i32, i64, i64)>);

/// The slots from `today` on, with places left.
#[derive(Message)]
#[rtype(result = "Vec<SlotView>")]
pub struct ListSlots {
    pub today: NaiveDate,
}

pub struct CenterInventory {
    shared: Arc<CenterShared>,
    inventory: Inventory,
    store: Addr<BookingStore>,
    /// Places taken in memory by bookings on their way to disk, per slot: a sync read may or
    /// may not hold them.
    in_flight: std::collections::HashMap<i32, i64>,
    /// When this node last changed each slot's places (a booking taken, answered or given
    /// back): a sync read started before that may have missed it, and leaves the slot alone.
    changed: std::collections::HashMap<i32, Instant>,
    /// When this node last gave back a place of each slot: a sync read started before that
    /// may still count it as taken, and leaves the slot alone.
    released: std::collections::HashMap<i32, Instant>,
}

impl CenterInventory {
    pub fn new(shared: Arc<CenterShared>, slots: Vec<Slot>, store: Addr<BookingStore>) -> Self {
        let mut inventory = Inventory::default();
        slots.into_iter().for_each(|s| inventory.add(s));
        let actor = Self {
            shared,
            inventory,
            store,
            in_flight: Default::default(),
            changed: Default::default(),
            released: Default::default(),
        };
        actor.publish();
        actor
    }

    fn publish(&self) {
        self.shared
            .remaining
            .store(self.inventory.remaining(), Ordering::Relaxed);
        let supply = self.inventory.supply();
        *self.shared.supply.lock().unwrap_or_else(|e| e.into_inner()) = supply;
    }

    /// Adjusts the published figures for one slot by `delta` places.
    fn publish_change(&self, slot: &Slot, delta: i64) {
        self.shared.remaining.fetch_add(delta, Ordering::Relaxed);
        let mut supply = self.shared.supply.lock().unwrap_or_else(|e| e.into_inner());
        *supply
            .entry(slot.vaccine.clone())
            .or_default()
            .entry(slot.date)
            .or_default() += delta;
    }

    fn touch(&mut self, ids: [i32; 2]) {
        let now = Instant::now();
        for id in ids {
            self.changed.insert(id, now);
        }
    }

    /// Places of these slots were given back here, now.
    fn touch_released(&mut self, ids: [i32; 2]) {
        self.touch(ids);
        let now = Instant::now();
        for id in ids {
            self.released.insert(id, now);
        }
    }

    fn release(&mut self, first: i32, second: i32) {
        self.touch_released([first, second]);
        self.inventory.release(first, second);
        for id in [first, second] {
            if let Some(slot) = self.inventory.get(id).cloned() {
                self.publish_change(&slot, 1);
            }
        }
    }
}

impl Actor for CenterInventory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Book> for CenterInventory {
    type Result = ResponseActFuture<Self, Result<Booked, BookError>>;

    fn handle(&mut self, msg: Book, _: &mut Context<Self>) -> Self::Result {
        let r = msg.0;
        let reserved = self
            .inventory
            .reserve(r.slot_id, &r.vaccine, r.dose_interval_days, r.today);
        let reservation = match reserved {
            Ok(res) => res,
            Err(refusal) => return Box::pin(fut::ready(Err(BookError::Refused(refusal)))),
        };
        self.publish_change(&reservation.first, -1);
        self.publish_change(&reservation.second, -1);
        let (first, second) = (reservation.first, reservation.second);
        for id in [first.id, second.id] {
            *self.in_flight.entry(id).or_default() += 1;
        }
        self.touch([first.id, second.id]);
        let booking = NewBookingRow {
            code: r.code,
            citizen_key: r.citizen.key.clone(),
            cohort_id: r.cohort_id,
            ticket_seq: r.ticket_seq as i64,
            vaccine: r.vaccine,
            center_id: self.shared.id,
            first_slot_id: first.id,
            first_date: first.date.to_string(),
            first_start: format_time(first.start),
            second_slot_id: second.id,
            second_date: second.date.to_string(),
            second_start: format_time(second.start),
            state: STATE_CONFIRMED.to_string(),
            idempotency_key: r.idempotency_key,
            created_at: r.now,
        };
        let write = Write::Book {
            citizen: Box::new(r.citizen),
            booking: Box::new(booking),
            queue_index: r.queue_index,
        };
        Box::pin(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(move |res, act, _| {
                    act.touch([first.id, second.id]);
                    for id in [first.id, second.id] {
                        if let Some(n) = act.in_flight.get_mut(&id) {
                            *n -= 1;
                            if *n <= 0 {
                                act.in_flight.remove(&id);
                            }
                        }
                    }
                    let outcome = match res {
                        Ok(Ok(Written::Book(outcome))) => outcome,
                        Ok(Ok(other)) => {
                            log::error!("the store answered a booking with {other:?}");
                            act.release(first.id, second.id);
                            return Err(BookError::Store(StoreError::Commit(
                                "unexpected answer".into(),
                            )));
                        }
                        Ok(Err(e)) => {
                            act.release(first.id, second.id);
                            return Err(BookError::Store(e));
                        }
                        Err(_) => {
                            act.release(first.id, second.id);
                            return Err(BookError::Store(StoreError::Busy));
                        }
                    };
                    match outcome {
                        BookOutcome::Booked(row) => Ok(Booked { row, repeat: false }),
                        BookOutcome::Repeat(row) => {
                            act.release(first.id, second.id);
                            Ok(Booked { row, repeat: true })
                        }
                        BookOutcome::AlreadyBooked => {
                            act.release(first.id, second.id);
                            Err(BookError::AlreadyBooked)
                        }
                        BookOutcome::SlotFull(full) => {
                            // The database had the last word: another node took the place.
                            // Full here too, until a sync reads how full.
                            act.release(first.id, second.id);
                            act.inventory.fill(full);
                            act.publish();
                            Err(BookError::Refused(Refusal::SlotFull))
                        }
                    }
                }),
        )
    }
}

impl Handler<Release> for CenterInventory {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.release(msg.first_slot_id, msg.second_slot_id);
    }
}

impl Handler<AddSlots> for CenterInventory {
    type Result = ResponseActFuture<Self, Result<Vec<SlotView>, StoreError>>;

    fn handle(&mut self, msg: AddSlots, _: &mut Context<Self>) -> Self::Result {
        let rows: Vec<NewSlotRow> = msg
            .0
            .iter()
            .map(|s| NewSlotRow {
                center_id: self.shared.id,
                date: s.date.to_string(),
                start_time: format_time(s.start),
                end_time: format_time(s.end),
                capacity: s.capacity as i32,
                vaccine: s.vaccine.clone(),
            })
            .collect();
        let slots = msg.0;
        Box::pin(
            self.store
                .send(Persist(Write::CreateSlots(rows)))
                .into_actor(self)
                .map(move |res, act, _| {
                    let ids = match res.map_err(|_| StoreError::Busy)?? {
                        Written::Ids(ids) => ids,
                        other => {
                            return Err(StoreError::Commit(format!("unexpected answer {other:?}")))
                        }
                    };
                    let added: Vec<Slot> = ids
                        .into_iter()
                        .zip(slots)
                        .map(|(id, s)| Slot {
                            id,
                            date: s.date,
                            start: s.start,
                            end: s.end,
                            vaccine: s.vaccine,
                            capacity: s.capacity,
                            booked: 0,
                        })
                        .collect();
                    let views = added.iter().map(SlotView::from).collect();
                    for slot in added {
                        act.inventory.add(slot);
                    }
                    act.publish();
                    Ok(views)
                }),
        )
    }
}

impl Handler<ListSlots> for CenterInventory {
    type Result = MessageResult<ListSlots>;

    fn handle(&mut self, msg: ListSlots, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.inventory.listing(msg.today))
    }
}

impl Handler<AddKnownSlots> for CenterInventory {
    type Result = ();

    fn handle(&mut self, msg: AddKnownSlots, _: &mut Context<Self>) {
        for row in msg.0 {
            if self.inventory.get(row.id).is_some() {
                continue;
            }
            match row.slot() {
                Ok(slot) => self.inventory.add(slot),
                Err(e) => log::error!("center {}: {e}", self.shared.id),
            }
        }
        self.publish();
    }
}

impl Handler<SyncPlaces> for CenterInventory {
    type Result = ();

    fn handle(&mut self, msg: SyncPlaces, _: &mut Context<Self>) {
        let mut changed = false;
        let read_from = msg.0;
        for (id, capacity, booked) in msg.1 {
            let since_read = |at: Option<&Instant>| at.is_some_and(|at| *at >= read_from);
            if since_read(self.released.get(&id)) {
                // A place given back here since the read began (the read may still count it
                // as taken): the next quiet read settles it.
                continue;
            }
            if since_read(self.changed.get(&id)) || self.in_flight.contains_key(&id) {
                // Taken here since the read began, or a booking of it on its way to disk (the
                // read may or may not hold either): only what makes the slot fuller is taken
                // from the read. That is other nodes' bookings, whose counts the waiting rooms
                // get next: they must not find those places both free and no longer held.
                // The next quiet read settles the rest; and the database has the last word (a
                // booking it finds no place for marks the slot full here, `Inventory::fill`).
                changed |= self.inventory.narrow_places(id, capacity, booked);
                continue;
            }
            changed |= self.inventory.set_places(id, capacity, booked);
        }
        if changed {
            self.publish();
        }
    }
}

/// Slots cancelled (`PATCH admin/slots/{id}`, here or at another node): dropped from this
/// center, never listed or booked again. Their bookings are moved by the rebooking job.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DropSlots(pub Vec<i32>);

impl Handler<DropSlots> for CenterInventory {
    type Result = ();

    fn handle(&mut self, msg: DropSlots, _: &mut Context<Self>) {
        let mut changed = false;
        for id in msg.0 {
            changed |= self.inventory.remove(id);
        }
        if changed {
            self.publish();
        }
    }
}

/// Takes a place for the second dose of a first dose given outside the slots (a leftover
/// dose, `actors::leftovers`), by the usual rule; answers the slot.
#[derive(Message)]
#[rtype(result = "Result<Slot, Refusal>")]
pub struct ReserveSecondDose {
    pub vaccine: String,
    pub date: NaiveDate,
    /// Minutes after midnight.
    pub start: u16,
    pub interval_days: u32,
}

/// Gives back the place `ReserveSecondDose` took (the booking did not go through).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseSecondDose(pub i32);

impl Handler<ReserveSecondDose> for CenterInventory {
    type Result = Result<Slot, Refusal>;

    fn handle(&mut self, msg: ReserveSecondDose, _: &mut Context<Self>) -> Self::Result {
        let slot =
            self.inventory
                .reserve_second(&msg.vaccine, msg.date, msg.start, msg.interval_days)?;
        self.publish_change(&slot, -1);
        *self.in_flight.entry(slot.id).or_default() += 1;
        self.touch([slot.id, slot.id]);
        Ok(slot)
    }
}

impl Handler<ReleaseSecondDose> for CenterInventory {
    type Result = ();

    fn handle(&mut self, msg: ReleaseSecondDose, _: &mut Context<Self>) {
        self.settle(msg.0);
        self.touch_released([msg.0, msg.0]);
        self.inventory.release_one(msg.0);
        if let Some(slot) = self.inventory.get(msg.0).cloned() {
            self.publish_change(&slot, 1);
        }
    }
}

/// The second dose `ReserveSecondDose` took is on disk now (or given back): no longer in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SecondDoseSettled(pub i32);

impl Handler<SecondDoseSettled> for CenterInventory {
    type Result = ();

    fn handle(&mut self, msg: SecondDoseSettled, _: &mut Context<Self>) {
        self.settle(msg.0);
        self.touch([msg.0, msg.0]);
    }
}

impl CenterInventory {
    fn settle(&mut self, id: i32) {
        if let Some(n) = self.in_flight.get_mut(&id) {
            *n -= 1;
            if *n <= 0 {
                self.in_flight.remove(&id);
            }
        }
    }
}
