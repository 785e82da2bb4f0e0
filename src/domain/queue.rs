//! The waiting room's arithmetic: queue order (with the one pre-queue shuffle), positions,
//! what a ticket's holder is told, how soon to poll again. The `CohortQueue` actor keeps the
//! counters; everything here is a pure function of them, so any handler can answer a poll
//! from a snapshot without waiting for the actor.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Ticket numbers are reserved on disk this many at a time, ahead of use.
pub const TICKET_BLOCK: u64 = 1024;
/// Longest wait between polls far back in the queue.
pub const MAX_POLL_SECONDS: u64 = 60;

/// Tickets taken before opening, in the order the shuffle at opening gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreQueue {
    pub count: u64,
    pub seed: u64,
    /// `index[seq]` is the queue index of pre-queue ticket `seq`: 4 bytes a citizen.
    index: Vec<u32>,
    /// `seq_at[qidx]`: the pre-queue ticket at queue index `qidx` (the inverse of `index`,
    /// for admission to find whose turn it is).
    seq_at: Vec<u32>,
    /// Where the skipped ranges landed: queue-index ranges, sorted, that hold nobody but the
    /// holders of numbers handed out in the last tick before a crash (see `with_gaps`).
    gaps: Vec<(u64, u64)>,
}

impl PreQueue {
    /// A uniform shuffle (Fisher–Yates over a ChaCha8 stream): the same seed and count give
    /// the same order on every run and every version of this server.
    pub fn new(count: u64, seed: u64) -> Self {
        Self::with_gaps(count, seed, &[])
    }

    /// The shuffle of the numbers below `count` when the ranges `skipped` (reserved before a
    /// restart, never recorded as handed out) are not people: each range is shuffled as one
    /// place among the lone numbers, and lands as one block of queue indices, a gap. Nobody in
    /// a range counts in anyone's position; whoever does hold one of its numbers (taken in the
    /// last tick before the crash) shares its place, drawn like anyone else's, and is admitted
    /// with it. Without ranges this is exactly `new`'s shuffle of old.
    pub fn with_gaps(count: u64, seed: u64, skipped: &[(u64, u64)]) -> Self {
        let ranges = merge_gaps(
            skipped
                .iter()
                .map(|(f, t)| (*f, (*t).min(count)))
                .filter(|(f, t)| f < t),
        );
        // The places to shuffle, in number order: where each starts, and which are ranges.
        let mut starts: Vec<u32> = Vec::with_capacity(count as usize);
        let mut range_places: Vec<u32> = Vec::with_capacity(ranges.len());
        let mut seq = 0u64;
        for (from, to) in &ranges {
            starts.extend(seq as u32..*from as u32);
            range_places.push(starts.len() as u32);
            starts.push(*from as u32);
            seq = *to;
        }
        starts.extend(seq as u32..count as u32);
        let mut order: Vec<u32> = (0..starts.len() as u32).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        // order[place in line] = place in number order; lay the places out one after another.
        let mut index = vec![0u32; count as usize];
        let mut gaps = Vec::with_capacity(ranges.len());
        let mut qidx = 0u64;
        for p in order {
            let from = u64::from(starts[p as usize]);
            let to = starts.get(p as usize + 1).map_or(count, |s| u64::from(*s));
            for (k, s) in (from..to).enumerate() {
                index[s as usize] = (qidx + k as u64) as u32;
            }
            if range_places.binary_search(&p).is_ok() {
                gaps.push((qidx, qidx + to - from));
            }
            qidx += to - from;
        }
        let mut seq_at = vec![0u32; count as usize];
        for (seq, qidx) in index.iter().enumerate() {
            seq_at[*qidx as usize] = seq as u32;
        }
        Self {
            count,
            seed,
            index,
            seq_at,
            gaps,
        }
    }

    /// Queue index of a ticket: shuffled for the pre-queue, its own number after opening.
    pub fn queue_index(&self, seq: u64) -> u64 {
        if seq < self.count {
            u64::from(self.index[seq as usize])
        } else {
            seq
        }
    }

    /// The ticket at queue index `qidx`: the inverse of `queue_index`.
    pub fn seq_at(&self, qidx: u64) -> u64 {
        if qidx < self.count {
            u64::from(self.seq_at[qidx as usize])
        } else {
            qidx
        }
    }

    /// The queue-index blocks where the skipped ranges landed, sorted.
    pub fn gaps(&self) -> &[(u64, u64)] {
        &self.gaps
    }
}

/// Sorts ranges and joins those that overlap or touch.
pub fn merge_gaps(ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = ranges.into_iter().filter(|(f, t)| f < t).collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (from, to) in all {
        match out.last_mut() {
            Some(last) if last.1 >= from => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

/// Whether `qidx` lies in one of `ranges` (sorted, disjoint).
pub fn in_ranges(ranges: &[(u64, u64)], qidx: u64) -> bool {
    let i = ranges.partition_point(|(_, to)| *to <= qidx);
    ranges.get(i).is_some_and(|(from, _)| *from <= qidx)
}

/// Ticket numbers (or queue indices) in `lo..hi` that fall in `gaps`.
pub fn gap_overlap(gaps: &[(u64, u64)], lo: u64, hi: u64) -> u64 {
    gaps.iter()
        .map(|(f, t)| (*t).min(hi).saturating_sub((*f).max(lo)))
        .sum()
}

/// One admission step: queue indices `from..upto` were admitted at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub from: u64,
    pub upto: u64,
    pub at_ms: i64,
}

/// What the queue looks like now, as published by its actor.
#[derive(Debug, Clone, Copy)]
pub struct QueueSnapshot<'a> {
    pub now_ms: i64,
    pub opens_at: i64,
    pub closes_at: i64,
    pub paused: bool,
    pub sold_out: bool,
    /// Ticket numbers handed out so far.
    pub issued: u64,
    pub admitted_upto: u64,
    pub pre_queue: Option<&'a PreQueue>,
    /// Admissions whose passes may still be valid, oldest first.
    pub batches: &'a [Batch],
    pub pass_ttl_s: i64,
    /// Admissions per second measured over the recent past.
    pub rate: f64,
    /// Ranges of queue indices reserved before a restart but not recorded as handed out: not
    /// counted in anyone's position, jumped by admission. The holders of the few numbers in one
    /// that were handed out in the last tick before the restart share its first place and are
    /// admitted with it. Sorted, disjoint.
    pub gaps: &'a [(u64, u64)],
    /// Queue-index ranges admission passed over, nobody having polled them for
    /// `ABSENT_AFTER_SECONDS` when their turn came. Sorted, disjoint, behind the front.
    pub passed: &'a [(u64, u64)],
    /// Passed-over tickets that polled again and were admitted beside the line: queue index,
    /// admitted at (ms).
    pub returns: &'a std::collections::HashMap<u64, i64>,
    /// `ABSENT_AFTER_SECONDS` (0: nobody is passed over): nobody is told to wait longer than
    /// half of it between polls, so that whoever follows the answers is never taken for absent.
    pub absent_after_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    PreQueue,
    Waiting,
    Admitted,
    Expired,
    SoldOut,
    Closed,
}

/// What the holder of a ticket is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketStatus {
    pub state: TicketState,
    pub position: Option<u64>,
    pub ahead: Option<u64>,
    pub behind: Option<u64>,
    pub eta_seconds: Option<u64>,
    pub poll_after_seconds: u64,
    /// Unix seconds at which the pass lapses, while admitted.
    #[serde(skip)]
    pub pass_expires_at: Option<i64>,
    /// Passed over while absent and back: to be admitted beside the line.
    #[serde(skip)]
    pub returning: bool,
}

impl QueueSnapshot<'_> {
    pub fn status(&self, seq: u64) -> TicketStatus {
        let now = self.now_ms.div_euclid(1000);
        let closed = now >= self.closes_at;
        let Some(pre) = self.pre_queue else {
            return self.pre_queue_status(seq, now, closed);
        };
        let qidx = pre.queue_index(seq);
        let behind = Some(self.issued.saturating_sub(qidx + 1));
        if qidx < self.admitted_upto && in_ranges(self.passed, qidx) {
            return self.returning_status(qidx, now, behind);
        }
        if qidx < self.admitted_upto {
            let expires = self.pass_expiry(qidx);
            let state = match expires {
                Some(at) if now < at => TicketState::Admitted,
                _ => TicketState::Expired,
            };
            return TicketStatus {
                state,
                position: Some(0),
                ahead: Some(0),
                behind,
                eta_seconds: Some(0),
                poll_after_seconds: if state == TicketState::Admitted {
                    5
                } else {
                    MAX_POLL_SECONDS
                },
                pass_expires_at: expires.filter(|at| now < *at),
                returning: false,
            };
        }
        let front = self.admitted_upto;
        let overlap = |lo: u64, hi: u64| gap_overlap(self.gaps, lo, hi);
        let position = qidx - front + 1 - overlap(front, qidx);
        let behind = behind.map(|b| b.saturating_sub(overlap(qidx + 1, u64::MAX)));
        let (state, eta) = if closed {
            (TicketState::Closed, None)
        } else if self.sold_out {
            (TicketState::SoldOut, None)
        } else if self.paused {
            (TicketState::Waiting, None)
        } else {
            (TicketState::Waiting, eta_seconds(position, self.rate))
        };
        TicketStatus {
            state,
            position: Some(position),
            ahead: Some(position - 1),
            behind,
            eta_seconds: eta,
            poll_after_seconds: self.within_absence(poll_after(position, eta)),
            pass_expires_at: None,
            returning: false,
        }
    }

    /// A ticket passed over while absent: admitted beside the line once back (its place
    /// kept), ahead of everyone still waiting; until the admission is on disk, next in line.
    fn returning_status(&self, qidx: u64, now: i64, behind: Option<u64>) -> TicketStatus {
        let expires = self
            .returns
            .get(&qidx)
            .map(|at_ms| at_ms.div_euclid(1000) + self.pass_ttl_s);
        match expires {
            Some(at) => TicketStatus {
                state: if now < at {
                    TicketState::Admitted
                } else {
                    TicketState::Expired
                },
                position: Some(0),
                ahead: Some(0),
                behind,
                eta_seconds: Some(0),
                poll_after_seconds: if now < at { 5 } else { MAX_POLL_SECONDS },
                pass_expires_at: Some(at).filter(|at| now < *at),
                returning: false,
            },
            None => TicketStatus {
                state: if now >= self.closes_at {
                    TicketState::Closed
                } else {
                    TicketState::Waiting
                },
                position: Some(1),
                ahead: Some(0),
                behind,
                eta_seconds: Some(1),
                poll_after_seconds: 1,
                pass_expires_at: None,
                returning: now < self.closes_at,
            },
        }
    }

    /// A wait between polls no longer than half of `ABSENT_AFTER_SECONDS`.
    fn within_absence(&self, poll_after: u64) -> u64 {
        match self.absent_after_s {
            0 => poll_after,
            absent => poll_after.min((absent / 2).max(1)),
        }
    }

    fn pre_queue_status(&self, seq: u64, now: i64, closed: bool) -> TicketStatus {
        let to_open = (self.opens_at - now).max(0) as u64;
        // Spread the first polls after opening over ten seconds: the order is shuffled, so
        // polling first wins nothing, and the server is spared a thundering herd.
        let spread = seq % 10;
        let poll = if to_open > MAX_POLL_SECONDS + 10 {
            MAX_POLL_SECONDS - spread
        } else {
            to_open + 1 + spread
        };
        TicketStatus {
            state: if closed {
                TicketState::Closed
            } else {
                TicketState::PreQueue
            },
            position: None,
            ahead: None,
            behind: None,
            eta_seconds: None,
            poll_after_seconds: self.within_absence(poll.max(1)),
            pass_expires_at: None,
            returning: false,
        }
    }

    /// When the pass of an admitted queue index lapses, if its admission is still on record.
    fn pass_expiry(&self, qidx: u64) -> Option<i64> {
        let i = self.batches.partition_point(|b| b.upto <= qidx);
        let b = self.batches.get(i)?;
        (b.from <= qidx).then(|| b.at_ms.div_euclid(1000) + self.pass_ttl_s)
    }
}

/// Seconds until admission at `rate` per second, for the `position`-th in line.
pub fn eta_seconds(position: u64, rate: f64) -> Option<u64> {
    (rate > 0.0).then(|| (position as f64 / rate).ceil() as u64)
}

/// How long to wait before the next poll: a tenth of the expected wait, between 1 s near the
/// front and 60 s far back. With N waiting at rate r, the whole queue polls about
/// 10·r (the first 10·r s of the line) + 10·r·ln 60 (the middle) + (N − 600·r)/60 times a second.
pub fn poll_after(position: u64, eta: Option<u64>) -> u64 {
    match eta {
        Some(eta) => eta.div_ceil(10).clamp(1, MAX_POLL_SECONDS),
        // Paused or sold out: nothing moves until an operator acts; poll slowly, a little
        // sooner near the front.
        None => (position / 100).clamp(10, MAX_POLL_SECONDS),
    }
}

/// Expected total polls per second for `waiting` tickets at `rate` admissions per second,
/// from the policy of [`poll_after`]: the figure the benchmark checks against.
pub fn expected_poll_rate(waiting: u64, rate: f64) -> f64 {
    (1..=waiting)
        .map(|p| 1.0 / poll_after(p, eta_seconds(p, rate)) as f64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_RETURNS: std::sync::LazyLock<std::collections::HashMap<u64, i64>> =
        std::sync::LazyLock::new(Default::default);

    fn snapshot<'a>(pre: Option<&'a PreQueue>, batches: &'a [Batch]) -> QueueSnapshot<'a> {
        QueueSnapshot {
            now_ms: 1_000_000,
            opens_at: 900,
            closes_at: 10_000,
            paused: false,
            sold_out: false,
            issued: 100,
            admitted_upto: 10,
            pre_queue: pre,
            batches,
            pass_ttl_s: 600,
            rate: 5.0,
            gaps: &[],
            passed: &[],
            returns: &NO_RETURNS,
            absent_after_s: 0,
        }
    }

    #[test]
    fn numbers_never_handed_out_are_not_counted_as_people_ahead() {
        let pre = PreQueue::new(0, 1);
        let mut s = snapshot(Some(&pre), &[]);
        s.gaps = &[(20, 50), (60, 70)]; // admitted_upto is 10, issued 100
        assert_eq!(s.status(80).position, Some(80 - 10 + 1 - 30 - 10));
        assert_eq!(s.status(15).position, Some(6), "before the gaps: unchanged");
        assert_eq!(s.status(15).behind, Some(100 - 16 - 40));
        assert_eq!(s.status(30).position, Some(11), "inside one: at its start");
        s.admitted_upto = 50;
        assert_eq!(
            s.status(80).position,
            Some(80 - 50 + 1 - 10),
            "a passed gap no longer counts"
        );
    }

    #[test]
    fn a_ticket_passed_over_is_next_when_back_and_admitted_from_its_return() {
        let pre = PreQueue::new(0, 1);
        let passed = [(3, 5)];
        let mut returns = std::collections::HashMap::new();
        let mut s = snapshot(Some(&pre), &[]);
        s.passed = &passed;
        let back = s.status(4);
        assert_eq!((back.state, back.position), (TicketState::Waiting, Some(1)));
        assert!(back.returning);
        assert!(!s.status(2).returning, "admitted in its step, not passed");
        assert!(!s.status(50).returning);
        returns.insert(4, 999_000);
        s.returns = &returns;
        let admitted = s.status(4);
        assert_eq!(admitted.state, TicketState::Admitted);
        assert_eq!(admitted.pass_expires_at, Some(999 + 600));
        assert!(!admitted.returning);
    }

    #[test]
    fn nobody_is_told_to_wait_between_polls_longer_than_half_the_absence() {
        let pre = PreQueue::new(0, 1);
        let mut s = snapshot(Some(&pre), &[]);
        s.rate = 0.01; // far back: 60 s between polls
        assert_eq!(s.status(99).poll_after_seconds, MAX_POLL_SECONDS);
        s.absent_after_s = 20;
        assert_eq!(s.status(99).poll_after_seconds, 10);
    }

    #[test]
    fn seq_at_inverts_the_shuffle() {
        let a = PreQueue::new(500, 4);
        for seq in 0..600 {
            assert_eq!(a.seq_at(a.queue_index(seq)), seq);
        }
        assert_eq!(
            crate::domain::unhex(&crate::domain::hex(&[0, 7, 255])),
            Some(vec![0, 7, 255])
        );
        assert_eq!(crate::domain::unhex("zz"), None);
    }

    #[test]
    fn the_shuffle_is_a_permutation_reproducible_from_its_seed() {
        let a = PreQueue::new(1000, 7);
        let mut seen: Vec<u64> = (0..1000).map(|s| a.queue_index(s)).collect();
        assert_ne!(seen, (0..1000).collect::<Vec<_>>(), "not the join order");
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "each place once");
        assert_eq!(a, PreQueue::new(1000, 7));
        assert_ne!(a, PreQueue::new(1000, 8));
        assert_eq!(
            a.queue_index(1000),
            1000,
            "after opening, a ticket's number is its place"
        );
    }

    /// The shuffle of old, kept here to show `new` still draws it: an order already shuffled
    /// must not change under an upgrade.
    fn old_shuffle(count: u64, seed: u64) -> Vec<u64> {
        let mut order: Vec<u32> = (0..count as u32).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut index = vec![0u64; order.len()];
        for (qidx, seq) in order.iter().enumerate() {
            index[*seq as usize] = qidx as u64;
        }
        index
    }

    #[test]
    fn without_skipped_ranges_the_shuffle_is_the_one_of_old() {
        let a = PreQueue::with_gaps(500, 3, &[]);
        let got: Vec<u64> = (0..500).map(|s| a.queue_index(s)).collect();
        assert_eq!(got, old_shuffle(500, 3));
        assert!(a.gaps().is_empty());
    }

    #[test]
    fn a_restart_before_opening_adds_one_shared_place_to_the_pre_queue_not_its_phantoms() {
        // 10 people took 0..10, then 12..14 after a restart that skipped 10..12 (two numbers
        // recorded nowhere: handed out in the last tick, or never) and another that skipped
        // 14..2062 (2,048 reserved, never handed out).
        let skipped = [(10, 12), (14, 2062)];
        let count = 2065; // 2062..2065: three more people after the second restart
        let pre = PreQueue::with_gaps(count, 9, &skipped);
        let gaps = pre.gaps().to_vec();
        assert_eq!(gaps.len(), 2);
        assert_eq!(gaps.iter().map(|(f, t)| t - f).sum::<u64>(), 2 + 2048);
        let people: Vec<u64> = (0..10).chain(12..14).chain(2062..2065).collect();
        let mut snap = QueueSnapshot {
            issued: count,
            admitted_upto: 0,
            gaps: &gaps,
            ..snapshot(Some(&pre), &[])
        };
        let mut positions: Vec<u64> = people
            .iter()
            .map(|s| snap.status(*s).position.unwrap())
            .collect();
        positions.sort_unstable();
        assert_eq!(
            positions,
            (1..=15).collect::<Vec<_>>(),
            "15 people in line, whatever the restarts reserved"
        );
        // The numbers of a skipped range share its one place: its first index.
        let (a, b) = (pre.queue_index(10), pre.queue_index(11));
        assert_eq!(b, a + 1);
        assert!(gaps.contains(&(a, a + 2)));
        assert_eq!(snap.status(10).position, snap.status(11).position);
        // Places are drawn: the ranges do not all sit at the end.
        assert!(PreQueue::with_gaps(count, 9, &skipped) == pre);
        let first_places: Vec<u64> = (0..40)
            .map(|seed| PreQueue::with_gaps(count, seed, &skipped).gaps()[0].0)
            .collect();
        assert!(first_places.iter().any(|q| *q < 10), "{first_places:?}");
        // Someone joining after opening is behind the 15, not behind 2,065.
        snap.issued = count + 1;
        assert_eq!(snap.status(count).position, Some(16));
    }

    #[test]
    fn a_waiting_ticket_is_told_its_place_and_wait() {
        let pre = PreQueue::new(0, 1);
        let s = snapshot(Some(&pre), &[]).status(59);
        assert_eq!(s.state, TicketState::Waiting);
        assert_eq!(
            (s.position, s.ahead, s.behind),
            (Some(50), Some(49), Some(40))
        );
        assert_eq!(s.eta_seconds, Some(10));
        assert_eq!(s.poll_after_seconds, 1);
    }

    #[test]
    fn an_admitted_ticket_gets_its_pass_expiry_until_it_lapses() {
        let pre = PreQueue::new(0, 1);
        let batches = [Batch {
            from: 0,
            upto: 10,
            at_ms: 950_000,
        }];
        let s = snapshot(Some(&pre), &batches).status(3);
        assert_eq!(s.state, TicketState::Admitted);
        assert_eq!(s.pass_expires_at, Some(1550));
        let mut later = snapshot(Some(&pre), &batches);
        later.now_ms = 1_550_000;
        assert_eq!(later.status(3).state, TicketState::Expired);
        // An admission no longer on record has lapsed too.
        assert_eq!(
            snapshot(Some(&pre), &[]).status(3).state,
            TicketState::Expired
        );
    }

    #[test]
    fn paused_and_sold_out_queues_promise_no_time() {
        let pre = PreQueue::new(0, 1);
        let mut s = snapshot(Some(&pre), &[]);
        s.paused = true;
        assert_eq!(s.status(50).eta_seconds, None);
        assert_eq!(s.status(50).state, TicketState::Waiting);
        s.sold_out = true;
        assert_eq!(s.status(50).state, TicketState::SoldOut);
    }

    #[test]
    fn before_opening_there_is_no_position() {
        let s = snapshot(None, &[]).status(5);
        assert_eq!(s.state, TicketState::PreQueue);
        assert_eq!(s.position, None);
    }

    #[test]
    fn polling_slows_with_distance_from_the_front() {
        assert_eq!(poll_after(10, eta_seconds(10, 100.0)), 1);
        assert_eq!(poll_after(100_000, eta_seconds(100_000, 100.0)), 60);
        let near = poll_after(2_000, eta_seconds(2_000, 100.0));
        assert!((1..60).contains(&near));
        // 800k waiting at 100/s poll about 17k times a second, not 800k.
        let total = expected_poll_rate(800_000, 100.0);
        assert!(total < 20_000.0, "{total}");
    }
}
