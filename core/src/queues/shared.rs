//! The part of a queue that lives in shared memory, independent of the item type: a chain of
//! segments of 64-bit words in one `memfd`, two robust mutexes (producers', consumers'), and
//! counters that stay exact when a process dies in the middle of a `put` or a `get`.
//!
//! ## Segments
//! A segment is a ring of `2^k` words with its own tail (where producers write) and head (where
//! consumers read), both positions that only grow (a word's place is its position modulo the
//! capacity). The first segment, *the ring*, lives in the queue's region itself. When a record
//! does not fit in the producers' segment, they link a successor (`NEXT`) and go on there: the
//! ring again if consumers have left it, otherwise a new *overflow* segment, an extent of the same
//! `memfd` ([`SharedRegion::grow`]), at least twice as large as the last. Consumers drain a
//! segment, follow its `NEXT` once it is empty, and free it: the ring becomes free for reuse, an
//! overflow segment's memory is given back (a hole punched in the file). Producers return to the
//! ring as soon as what is in flight would fit in a quarter of it, so a queue that caught up runs
//! in its ring again. Every process holds the `memfd` (inherited, or received by `SCM_RIGHTS` at
//! start), so a segment made later reaches every process: it is named by its offset in the file.
//! Nothing is named in `/dev/shm`: when the last process holding the queue exits (or is killed),
//! the kernel frees it all.
//!
//! ## Records
//! An item is serialised and written as one record (a header word: length, `FIRST`, `LAST`; then
//! the bytes), or, above a quarter of the ring, as several records that may span segments.
//!
//! ## Invariants
//! - The producers' segment (`P_SEG`) has no successor; a segment's `NEXT` is set once, by a
//!   producer, after its last record there. Consumers leave a segment only when it is empty and
//!   has a `NEXT`.
//! - `PUT` counts items whose last record is published or about to be (it is raised just before
//!   the tail moves), `GOT` items whose last record was taken, so `GOT <= PUT` and the number of
//!   items in the queue is `PUT - GOT`; `DONE` counts `task_done` calls, and `PUT - DONE` is the
//!   number of unfinished tasks.
//! - A change of a counter together with a position is announced in a *journal* (segment, the
//!   position after, the counter before) that is cleared once both are done. A mutex holder that
//!   dies leaves it armed; whoever next acquires that mutex (`OwnerDied`) reads from the position
//!   whether the change happened and sets the counter to match, finishes a half-made link,
//!   frees a half-freed segment. So after any kill, at rest, `qsize` is exact.
//! - Only the holder of the consumers' mutex sleeps for data, only the holder of the producers'
//!   mutex sleeps for room (with a `maxsize`), so a sleeper's flag is cleared by the next holder if
//!   the sleeper died.

use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::region::{io, Deadline, SharedRegion};
use crate::sys::{self, LockOutcome, Mapping};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Layout of the region (each line written by one side).

const PRODUCER: usize = 0;
const CONSUMER: usize = 64;
// The producers' words, written under PRODUCER.
const P_SEG: usize = 128;
const PUT: usize = 136;
const P_HEAD: usize = 144; // the head of P_SEG as last read
const P_J_SEG: usize = 152;
const P_J_POS: usize = 160;
const P_J_COUNT: usize = 168;
const P_NEW: usize = 176; // an overflow segment made and not linked yet
const P_LINK: usize = 184; // the segment being linked after P_SEG
                           // The consumers' words, written under CONSUMER.
const C_SEG: usize = 192;
const GOT: usize = 200;
const C_TAIL: usize = 208; // the tail of C_SEG as last read
const C_J_SEG: usize = 216;
const C_J_POS: usize = 224;
const C_J_COUNT: usize = 232;
const C_LEAVING: usize = 240; // a segment being freed
const C_LEAVING_EPOCH: usize = 248;
// Sleepers.
const DATA_WAITING: usize = 256; // u32
const DATA_SEQ: usize = 260; // u32, futex
const SPACE_WAITING: usize = 320; // u32
const SPACE_SEQ: usize = 324; // u32, futex
const JOIN_WAITERS: usize = 384; // u32
const JOIN_SEQ: usize = 388; // u32, futex
const DONE: usize = 392; // u64
                         // Settings, and the state of the ring.
const MAXSIZE: usize = 448;
const RING_STATE: usize = 460; // u32
const RING_EPOCH: usize = 464; // u64: how many times producers took the ring back
const OVF_LOW: usize = 472; // u64: overflow segments below this file offset are freed
const RING: usize = 512; // the ring's segment header

// A segment's header.
const SEG_TAIL: usize = 0;
const SEG_HEAD: usize = 64;
const SEG_CAP: usize = 128;
const SEG_NEXT: usize = 136;
const SEG_DATA: usize = 192;

/// The ring's id. An overflow segment's id is its file offset (a multiple of 64 KiB) plus `k`,
/// its capacity being `2^k` words.
const RING_ID: u64 = 1;
const ID_SHIFT_MASK: u64 = 0x3f;
const ID_OFFSET_MASK: u64 = !0xffff;

// RING_STATE
const IN_CHAIN: u32 = 0;
const FREE: u32 = 1;
const CLAIMED: u32 = 2;

/// The largest overflow segment made to double the previous one (1 GiB).
const MAX_GROWTH_WORDS: u64 = 1 << 27;

// Record header: payload length in the low 32 bits, flags above.
const FIRST: u64 = 1 << 32;
const LAST: u64 = 1 << 33;
const LEN_MASK: u64 = 0xffff_ffff;

/// How many times a waiter checks its condition before it sleeps on the futex.
const SPIN: u32 = 256;

/// How often a waiter whose wake-up depends on another process's progress checks that the other
/// is alive: a consumer waiting for the rest of an item, `join` waiting for `task_done`s.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);

fn words(bytes: usize) -> u64 {
    bytes.div_ceil(8) as u64
}

/// Which mutex.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Producers,
    Consumers,
}

impl Side {
    fn mutex(self) -> usize {
        match self {
            Side::Producers => PRODUCER,
            Side::Consumers => CONSUMER,
        }
    }
}

/// The mapping a segment lives in.
enum SegMap<'a> {
    Ring(&'a Mapping),
    Extent(Arc<Mapping>),
}

/// A segment, as seen from this process.
struct Seg<'a> {
    map: SegMap<'a>,
    base: usize,
    cap: u64,
    id: u64,
}

impl Seg<'_> {
    #[inline]
    fn m(&self) -> &Mapping {
        match &self.map {
            SegMap::Ring(m) => m,
            SegMap::Extent(m) => m,
        }
    }
    #[inline]
    fn tail(&self) -> &AtomicU64 {
        self.m().u64_at(self.base + SEG_TAIL)
    }
    #[inline]
    fn head(&self) -> &AtomicU64 {
        self.m().u64_at(self.base + SEG_HEAD)
    }
    #[inline]
    fn next(&self) -> &AtomicU64 {
        self.m().u64_at(self.base + SEG_NEXT)
    }
    #[inline]
    fn words(&self) -> &[AtomicU64] {
        self.m().u64_slice(self.base + SEG_DATA, self.cap as usize)
    }

    /// Writes one record at the tail (the caller holds the producers' mutex and made room) and
    /// returns the tail after it; nothing is published yet.
    #[inline]
    fn write_record(&self, flags: u64, payload: &[u8]) -> u64 {
        let ring = self.words();
        let mask = self.cap - 1;
        let tail = self.tail().load(Relaxed);
        ring[(tail & mask) as usize].store(flags | payload.len() as u64, Relaxed);
        let mut pos = tail + 1;
        let mut chunks = payload.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            ring[(pos & mask) as usize].store(w, Relaxed);
            pos += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            ring[(pos & mask) as usize].store(u64::from_le_bytes(b), Relaxed);
            pos += 1;
        }
        pos
    }
}

/// The queue machinery, independent of the item type.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Shared {
    region: SharedRegion,
}

impl Shared {
    pub fn new(method: StartMethod, maxsize: Option<usize>, capacity: usize) -> Result<Shared> {
        if capacity < 4096 {
            return Err(Error::InvalidArgument(
                "a queue's ring needs at least 4096 bytes".into(),
            ));
        }
        let cap_words = (capacity / 8).checked_next_power_of_two().ok_or_else(|| {
            Error::InvalidArgument(format!("a ring of {capacity} bytes is too large"))
        })? as u64;
        let len = (RING + SEG_DATA)
            .checked_add(cap_words as usize * 8)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("a ring of {capacity} bytes is too large"))
            })?;
        let region = SharedRegion::new("queue", len, method, |m| {
            m.init_mutex(PRODUCER)?;
            m.init_mutex(CONSUMER)
        })?;
        let map = region.map();
        map.u64_at(MAXSIZE)
            .store(maxsize.unwrap_or(0) as u64, Relaxed);
        map.u64_at(RING + SEG_CAP).store(cap_words, Relaxed);
        map.u64_at(P_SEG).store(RING_ID, Relaxed);
        map.u64_at(C_SEG).store(RING_ID, Relaxed);
        map.u32_at(RING_STATE).store(IN_CHAIN, Relaxed);
        Ok(Shared { region })
    }

    #[inline]
    fn map(&self) -> &Mapping {
        self.region.map()
    }

    pub fn method(&self) -> StartMethod {
        self.region.method()
    }

    pub fn maxsize(&self) -> u64 {
        self.map().u64_at(MAXSIZE).load(Relaxed)
    }

    #[inline]
    fn ring_cap(&self) -> u64 {
        self.map().u64_at(RING + SEG_CAP).load(Relaxed)
    }

    /// The longest record: a quarter of the ring (so that an item several times larger than the
    /// ring still uses what room the ring has).
    fn max_record(&self) -> usize {
        (self.ring_cap() as usize * 8 / 4).min(LEN_MASK as usize)
    }

    /// The segment `id`.
    #[inline]
    fn seg(&self, id: u64) -> Result<Seg<'_>> {
        if id == RING_ID {
            return Ok(Seg {
                map: SegMap::Ring(self.map()),
                base: RING,
                cap: self.ring_cap(),
                id,
            });
        }
        self.overflow_seg(id)
    }

    fn overflow_seg(&self, id: u64) -> Result<Seg<'_>> {
        let len = seg_len(id)?;
        let cap = ((len - SEG_DATA) / 8) as u64;
        let map = self.region.extent(id & ID_OFFSET_MASK, len)?;
        Ok(Seg {
            map: SegMap::Extent(map),
            base: 0,
            cap,
            id,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Mutexes, and what a holder that died leaves behind.

    /// Acquires `side`'s mutex and settles what a holder that died left. `false`: not acquired
    /// before the deadline. Without `block`, a busy consumers' mutex is not acquired (as
    /// CPython's `get(block=False)`), while a busy producers' mutex is waited for unless the queue
    /// is full (its holders do bounded work, and CPython's `put_nowait` on a queue that is not full
    /// never fails).
    #[cold]
    fn lock(&self, side: Side, block: bool, deadline: Deadline) -> Result<bool> {
        let map = self.map();
        let off = side.mutex();
        let mut outcome = map
            .mutex_lock(off, block, deadline.remaining())
            .map_err(io)?;
        if outcome == LockOutcome::NotAcquired && !block && side == Side::Producers {
            let max = self.maxsize();
            if max == 0 || self.count_now() < max {
                outcome = map.mutex_lock(off, true, None).map_err(io)?;
            }
        }
        self.acquired(side, outcome)
    }

    /// Whether `side`'s mutex was acquired (`outcome`); if its owner had died, settles what it
    /// left first.
    fn acquired(&self, side: Side, outcome: LockOutcome) -> Result<bool> {
        match outcome {
            LockOutcome::NotAcquired => Ok(false),
            LockOutcome::Acquired => Ok(true),
            LockOutcome::OwnerDied => {
                let settled = match side {
                    Side::Producers => self.settle_producers(),
                    Side::Consumers => self.settle_consumers(),
                };
                if let Err(e) = settled {
                    self.unlock(side);
                    return Err(e);
                }
                Ok(true)
            }
        }
    }

    fn unlock(&self, side: Side) {
        let _ = self.map().mutex_unlock(side.mutex());
    }

    /// Acquires `side`'s mutex if it is free, settling what a dead holder left, and releases it.
    /// `true` if it was free (no live holder).
    fn probe(&self, side: Side) -> Result<bool> {
        let acquired = self.lock_now(side)?;
        if acquired {
            self.unlock(side);
        }
        Ok(acquired)
    }

    /// Acquires `side`'s mutex if it is free (not `lock`: one try, whichever the side).
    #[inline]
    fn lock_now(&self, side: Side) -> Result<bool> {
        match self.map().mutex_lock(side.mutex(), false, None) {
            Ok(LockOutcome::Acquired) => Ok(true),
            Ok(outcome) => self.acquired(side, outcome),
            Err(e) => Err(io(e)),
        }
    }

    /// Repairs what a producer that died holding the mutex left (the caller holds it now).
    fn settle_producers(&self) -> Result<()> {
        let map = self.map();
        // A link half made: finish it.
        let to = map.u64_at(P_LINK).load(Acquire);
        if to != 0 {
            let from = map.u64_at(P_SEG).load(Relaxed);
            // Consumers free a segment only after following its `NEXT`: a freed one was linked.
            let freed = if from == RING_ID {
                map.u32_at(RING_STATE).load(Acquire) == FREE
            } else {
                from & ID_OFFSET_MASK < map.u64_at(OVF_LOW).load(Acquire)
            };
            if !freed {
                let from = self.seg(from)?;
                if from.next().load(Acquire) == 0 {
                    from.next().store(to, SeqCst);
                }
            }
            self.finish_link(to)?;
        }
        let p_seg = map.u64_at(P_SEG).load(Relaxed);
        if map.u32_at(RING_STATE).load(Acquire) == CLAIMED && p_seg != RING_ID {
            // Taken back for a link that never began.
            map.u32_at(RING_STATE).store(FREE, Release);
        }
        let new = map.u64_at(P_NEW).load(Relaxed);
        if new != 0 {
            if new != p_seg {
                // Made, never linked: nobody will ever read it.
                let off = new & ID_OFFSET_MASK;
                self.region.punch(off, seg_len(new)?)?;
                self.region.forget_extents(|o| o == off);
            }
            map.u64_at(P_NEW).store(0, Relaxed);
        }
        // The count of an item whose publication was cut short: published or not, as the
        // segment's tail says.
        let j = map.u64_at(P_J_SEG).load(Acquire);
        if j != 0 {
            let seg = self.seg(j)?;
            let published = seg.tail().load(Acquire) >= map.u64_at(P_J_POS).load(Relaxed);
            let count = map.u64_at(P_J_COUNT).load(Relaxed) + published as u64;
            map.u64_at(PUT).store(count, SeqCst);
            map.u64_at(P_J_SEG).store(0, Release);
            // Fewer unfinished tasks, maybe none.
            self.wake_joiners();
        }
        map.u32_at(SPACE_WAITING).store(0, Relaxed);
        Ok(())
    }

    /// Repairs what a consumer that died holding the mutex left (the caller holds it now).
    fn settle_consumers(&self) -> Result<()> {
        let map = self.map();
        let leaving = map.u64_at(C_LEAVING).load(Acquire);
        if leaving != 0 {
            if map.u64_at(C_SEG).load(Relaxed) == leaving {
                // The move had not happened: make it (the segment is not freed yet, so its
                // successor is still written there).
                let next = self.seg(leaving)?.next().load(Acquire);
                map.u64_at(C_SEG).store(next, Relaxed);
            }
            self.free_segment(leaving, map.u64_at(C_LEAVING_EPOCH).load(Relaxed))?;
            map.u64_at(C_LEAVING).store(0, Release);
        }
        // An item being taken: once the journal is armed the item is taken (it left with the
        // consumer that died), so finish moving past it and count it.
        let j = map.u64_at(C_J_SEG).load(Acquire);
        if j != 0 {
            self.advance(j, map.u64_at(C_J_POS).load(Relaxed))?;
            let count = map.u64_at(C_J_COUNT).load(Relaxed) + 1;
            map.u64_at(GOT).store(count, SeqCst);
            map.u64_at(C_J_SEG).store(0, Release);
            self.wake_space();
        }
        map.u64_at(C_TAIL).store(0, Relaxed);
        map.u32_at(DATA_WAITING).store(0, Relaxed);
        Ok(())
    }

    /// Settles, if it can without waiting, what a holder that died left: the counters are then
    /// exact at rest.
    fn settle_abandoned(&self) -> Result<()> {
        let map = self.map();
        if map.u64_at(P_J_SEG).load(Acquire) != 0 {
            self.probe(Side::Producers)?;
        }
        if map.u64_at(C_J_SEG).load(Acquire) != 0 {
            self.probe(Side::Consumers)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Counting.

    fn count_now(&self) -> u64 {
        let map = self.map();
        let got = map.u64_at(GOT).load(SeqCst);
        map.u64_at(PUT).load(SeqCst).saturating_sub(got)
    }

    /// The number of items in the queue: exact at rest, even after processes died in the middle
    /// of a `put` or a `get`; while others put and get, a value it had during the call.
    pub fn count(&self) -> u64 {
        let _ = self.settle_abandoned();
        self.count_now()
    }

    // -----------------------------------------------------------------------------------------
    // Sleeping and waking.

    /// Spins briefly, then sleeps on the futex `seq` (announcing it in `flag`) until `ready`
    /// holds; false if `deadline` passed first. The one sleeper per flag is the holder of the
    /// matching mutex.
    fn wait_until(
        &self,
        flag: usize,
        seq: usize,
        deadline: Deadline,
        mut ready: impl FnMut() -> bool,
    ) -> Result<bool> {
        let map = self.map();
        // The other side is usually about to act; a futex sleep and wake-up cost two system
        // calls and a context switch.
        let spins = if deadline.passed() { 0 } else { SPIN };
        for i in 0..spins {
            if ready() {
                return Ok(true);
            }
            if i % 64 == 63 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        loop {
            if ready() {
                return Ok(true);
            }
            if deadline.passed() {
                return Ok(false);
            }
            map.u32_at(flag).store(1, SeqCst);
            let s = map.u32_at(seq).load(SeqCst);
            if ready() {
                map.u32_at(flag).store(0, Relaxed);
                return Ok(true);
            }
            let r = sys::futex_wait(map.u32_at(seq), s, deadline.remaining());
            map.u32_at(flag).store(0, Relaxed);
            r.map_err(io)?;
        }
    }

    /// Wakes the sleeper announced in `flag`, if any (after a `SeqCst` store that it waits for).
    #[inline]
    fn wake(&self, flag: usize, seq: usize) {
        let map = self.map();
        if map.u32_at(flag).load(SeqCst) != 0 {
            map.u32_at(seq).fetch_add(1, SeqCst);
            sys::futex_wake(map.u32_at(seq), u32::MAX);
        }
    }

    #[inline]
    fn wake_data(&self) {
        self.wake(DATA_WAITING, DATA_SEQ);
    }

    fn wake_space(&self) {
        if self.maxsize() > 0 {
            self.wake(SPACE_WAITING, SPACE_SEQ);
        }
    }

    fn wake_joiners(&self) {
        let map = self.map();
        if map.u32_at(JOIN_WAITERS).load(SeqCst) > 0 {
            map.u32_at(JOIN_SEQ).fetch_add(1, SeqCst);
            sys::futex_wake(map.u32_at(JOIN_SEQ), u32::MAX);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Producers.

    /// Puts one serialised item; `Err(Full)` if it could not within the deadline (only a
    /// `maxsize` or a busy producers' mutex makes a `put` wait).
    pub fn put(&self, bytes: &[u8], block: bool, timeout: Option<Duration>) -> Result<()> {
        // The common case reads no clock: the mutex free, room in the ring.
        let locked = self.lock_now(Side::Producers)?;
        if locked && self.put_in_ring(bytes) {
            self.unlock(Side::Producers);
            return Ok(());
        }
        let deadline = Deadline::after(if block { timeout } else { Some(Duration::ZERO) });
        if !locked && !self.lock(Side::Producers, block, deadline)? {
            return Err(Error::Full);
        }
        let r = self.put_locked(bytes, deadline);
        self.unlock(Side::Producers);
        r
    }

    /// The common case in few instructions: no `maxsize`, the producers in the ring, an item
    /// of one record that fits. False (and nothing done) otherwise.
    #[inline]
    fn put_in_ring(&self, bytes: &[u8]) -> bool {
        let map = self.map();
        if map.u64_at(MAXSIZE).load(Relaxed) != 0 || map.u64_at(P_SEG).load(Relaxed) != RING_ID {
            return false;
        }
        let cap = self.ring_cap();
        if bytes.len() > cap as usize * 2 {
            return false;
        }
        let need = 1 + words(bytes.len());
        let tail = map.u64_at(RING + SEG_TAIL).load(Relaxed);
        let cached = map.u64_at(P_HEAD);
        if cap - (tail - cached.load(Relaxed)) < need {
            let head = map.u64_at(RING + SEG_HEAD).load(Acquire);
            cached.store(head, Relaxed);
            if cap - (tail - head) < need {
                return false;
            }
        }
        let ring = Seg {
            map: SegMap::Ring(map),
            base: RING,
            cap,
            id: RING_ID,
        };
        let end = ring.write_record(FIRST | LAST, bytes);
        self.publish_item(&ring, end);
        true
    }

    /// Publishes the last record of an item, written up to `end` in `seg`: counts the item, then
    /// moves the tail, under the journal.
    #[inline]
    fn publish_item(&self, seg: &Seg<'_>, end: u64) {
        let map = self.map();
        let put = map.u64_at(PUT).load(Relaxed);
        map.u64_at(P_J_POS).store(end, Relaxed);
        map.u64_at(P_J_COUNT).store(put, Relaxed);
        map.u64_at(P_J_SEG).store(seg.id, Release);
        map.u64_at(PUT).store(put + 1, Relaxed);
        seg.tail().swap(end, SeqCst);
        map.u64_at(P_J_SEG).store(0, Release);
        self.wake_data();
    }

    fn put_locked(&self, bytes: &[u8], deadline: Deadline) -> Result<()> {
        let map = self.map();
        let maxsize = self.maxsize();
        if maxsize > 0 {
            let put = map.u64_at(PUT).load(Relaxed);
            let got = map.u64_at(GOT);
            if !self.wait_until(SPACE_WAITING, SPACE_SEQ, deadline, || {
                put.saturating_sub(got.load(SeqCst)) < maxsize
            })? {
                return Err(Error::Full);
            }
        }
        // From here on the item is accepted (unless memory runs out for a new segment before its
        // first record is published): it is written whole, whatever the deadline.
        let max = self.max_record();
        let mut rest = bytes;
        let mut flags = FIRST;
        loop {
            let n = rest.len().min(max);
            let last = n == rest.len();
            if last {
                flags |= LAST;
            }
            let seg = self.room(1 + words(n))?;
            let tail = seg.write_record(flags, &rest[..n]);
            if last {
                self.publish_item(&seg, tail);
                return Ok(());
            }
            seg.tail().swap(tail, SeqCst);
            self.wake_data();
            rest = &rest[n..];
            flags = 0;
        }
    }

    /// The producers' segment, with room for `need` words: the current one, or the ring taken
    /// back, or a new overflow segment.
    #[inline]
    fn room(&self, need: u64) -> Result<Seg<'_>> {
        let map = self.map();
        let seg = self.seg(map.u64_at(P_SEG).load(Relaxed))?;
        if seg.id != RING_ID && map.u32_at(RING_STATE).load(Acquire) == FREE {
            // Back to the ring once what is in flight here fits in a quarter of it.
            let ring_cap = self.ring_cap();
            let in_flight = seg.tail().load(Relaxed) - seg.head().load(Acquire);
            if in_flight <= ring_cap / 4 && need <= ring_cap {
                return self.link(seg, RING_ID);
            }
        }
        let tail = seg.tail().load(Relaxed);
        let cached = map.u64_at(P_HEAD);
        if seg.cap - (tail - cached.load(Relaxed)) >= need {
            return Ok(seg);
        }
        let head = seg.head().load(Acquire);
        cached.store(head, Relaxed);
        if seg.cap - (tail - head) >= need {
            return Ok(seg);
        }
        self.overflow(seg, need)
    }

    /// `seg` is full: links the ring if it is free and large enough, else a new overflow segment.
    #[cold]
    fn overflow<'a>(&'a self, seg: Seg<'a>, need: u64) -> Result<Seg<'a>> {
        let map = self.map();
        if seg.id != RING_ID
            && map.u32_at(RING_STATE).load(Acquire) == FREE
            && need <= self.ring_cap()
        {
            return self.link(seg, RING_ID);
        }
        let cap = need
            .checked_next_power_of_two()
            .ok_or_else(|| corrupt("a record length"))?
            .max((seg.cap * 2).min(MAX_GROWTH_WORDS));
        let len = (cap as usize)
            .checked_mul(8)
            .and_then(|b| b.checked_add(SEG_DATA))
            .ok_or_else(|| corrupt("a segment size"))?;
        let (off, _) = self.region.grow(len, |m| {
            m.u64_at(SEG_CAP).store(cap, Relaxed);
            Ok(())
        })?;
        let id = off | cap.trailing_zeros() as u64;
        map.u64_at(P_NEW).store(id, Relaxed);
        let to = self.link(seg, id)?;
        map.u64_at(P_NEW).store(0, Relaxed);
        Ok(to)
    }

    /// Makes `to` the successor of `from` and the producers' segment.
    fn link<'a>(&'a self, from: Seg<'a>, to: u64) -> Result<Seg<'a>> {
        let map = self.map();
        if to == RING_ID {
            map.u32_at(RING_STATE).store(CLAIMED, SeqCst);
            map.u64_at(RING_EPOCH).fetch_add(1, SeqCst);
        }
        map.u64_at(P_LINK).store(to, Release);
        from.next().store(to, SeqCst);
        let next = self.finish_link(to)?;
        let low = map.u64_at(OVF_LOW).load(Acquire);
        self.region.forget_extents(|o| o < low);
        Ok(next)
    }

    /// The second half of a link to `to` (after `NEXT` is set): the producers go there.
    fn finish_link(&self, to: u64) -> Result<Seg<'_>> {
        let map = self.map();
        let next = self.seg(to)?;
        map.u64_at(P_HEAD).store(next.head().load(Acquire), Relaxed);
        map.u64_at(P_SEG).store(to, Relaxed);
        if to == RING_ID {
            map.u32_at(RING_STATE).store(IN_CHAIN, Release);
        }
        map.u64_at(P_LINK).store(0, Release);
        // A consumer asleep on the previous segment (empty) now has somewhere to go.
        self.wake_data();
        Ok(next)
    }

    // -----------------------------------------------------------------------------------------
    // Consumers.

    /// Gets one serialised item into `out`; `Err(Empty)` if none came within the deadline.
    pub fn get(&self, out: &mut Vec<u8>, block: bool, timeout: Option<Duration>) -> Result<()> {
        // The common case reads no clock: the mutex free, an item in the ring.
        let locked = self.lock_now(Side::Consumers)?;
        if locked && self.get_from_ring(out) {
            self.unlock(Side::Consumers);
            return Ok(());
        }
        let deadline = Deadline::after(if block { timeout } else { Some(Duration::ZERO) });
        if !locked && !self.lock(Side::Consumers, block, deadline)? {
            return Err(Error::Empty);
        }
        let r = self.get_locked(out, deadline);
        self.unlock(Side::Consumers);
        r
    }

    /// The common case in few instructions: the consumers in the ring, an item of one record
    /// there. False (and nothing done) otherwise.
    #[inline]
    fn get_from_ring(&self, out: &mut Vec<u8>) -> bool {
        let map = self.map();
        if map.u64_at(C_SEG).load(Relaxed) != RING_ID {
            return false;
        }
        let head = map.u64_at(RING + SEG_HEAD).load(Relaxed);
        let cached = map.u64_at(C_TAIL);
        if cached.load(Relaxed) <= head {
            let tail = map.u64_at(RING + SEG_TAIL).load(Acquire);
            cached.store(tail, Relaxed);
            if tail <= head {
                return false;
            }
        }
        let cap = self.ring_cap();
        let mask = cap - 1;
        let ring = map.u64_slice(RING + SEG_DATA, cap as usize);
        let header = ring[(head & mask) as usize].load(Relaxed);
        if header & (FIRST | LAST) != FIRST | LAST {
            return false;
        }
        let len = (header & LEN_MASK) as usize;
        let end = head + 1 + words(len);
        out.clear();
        append_payload(ring, mask, head, len, out);
        // (A head move within the consumers' segment: no error is possible.)
        let _ = self.take(RING_ID, end, true);
        true
    }

    /// Reads the oldest item into `out`. An item is read whole before anything is taken: the
    /// consumers' head moves past all its records at once (under the journal), so a consumer
    /// that dies while reading takes nothing, and the next one reads the item again.
    fn get_locked(&self, out: &mut Vec<u8>, deadline: Deadline) -> Result<()> {
        let map = self.map();
        out.clear();
        // The read position: a segment and a position in it, from the consumers' head on.
        let mut at = map.u64_at(C_SEG).load(Relaxed);
        let mut pos = self.seg(at)?.head().load(Relaxed);
        // Whether `out` holds the first records of an item.
        let mut started = false;
        loop {
            let seg = self.seg(at)?;
            let tail = if at == map.u64_at(C_SEG).load(Relaxed) {
                let cached = map.u64_at(C_TAIL);
                let mut tail = cached.load(Relaxed);
                if tail <= pos {
                    tail = seg.tail().load(Acquire);
                    cached.store(tail, Relaxed);
                }
                tail
            } else {
                seg.tail().load(Acquire)
            };
            if tail > pos {
                let ring = seg.words();
                let mask = seg.cap - 1;
                let header = ring[(pos & mask) as usize].load(Relaxed);
                let len = (header & LEN_MASK) as usize;
                let end = pos + 1 + words(len);
                if header & FIRST != 0 {
                    if started {
                        // A new item begins before the last one ended: that one is the part a
                        // producer left when it died. Drop it.
                        self.take(at, pos, false)?;
                        out.clear();
                    }
                    started = true;
                } else if !started {
                    // The rest of an item dropped earlier (a consumer died while dropping it).
                    self.take(at, end, false)?;
                    pos = end;
                    continue;
                }
                append_payload(ring, mask, pos, len, out);
                pos = end;
                if header & LAST != 0 {
                    return self.take(at, pos, true);
                }
                continue;
            }
            // Nothing more here: the producers went on to the next segment, or wait.
            let next = seg.next().load(Acquire);
            if next != 0 {
                if seg.tail().load(Acquire) == pos {
                    if started {
                        // The item goes on there; this segment is left when it is taken.
                        at = next;
                        pos = self.seg(next)?.head().load(Acquire);
                    } else {
                        self.leave(seg, next)?;
                        at = next;
                        pos = self.seg(next)?.head().load(Relaxed);
                    }
                }
                continue;
            }
            if !started && at != RING_ID && self.back_to_ring(&seg, pos)? {
                continue;
            }
            let ready = || seg.tail().load(SeqCst) > pos || seg.next().load(SeqCst) != 0;
            if !started {
                if !self.wait_until(DATA_WAITING, DATA_SEQ, deadline, ready)? {
                    return Err(Error::Empty);
                }
            } else if !self.wait_until(
                DATA_WAITING,
                DATA_SEQ,
                Deadline::after(Some(LIVENESS_SLICE)),
                ready,
            )? {
                // The rest of an item is late. A producer writes an item whole while it holds
                // the producers' mutex: if that is free, the one that was writing died, and
                // unless its last parts are here, nothing more will come (the part was never
                // accepted).
                if self.probe(Side::Producers)?
                    && seg.tail().load(SeqCst) == pos
                    && seg.next().load(SeqCst) == 0
                {
                    self.take(at, pos, false)?;
                    started = false;
                    out.clear();
                }
            }
        }
    }

    /// Moves the consumers' head to `pos` of segment `to`, leaving (and freeing) the segments
    /// before it: they hold nothing but the records read. With `item`, one item is taken: the
    /// count and the head change under the journal, so that the change completes even if this
    /// process dies half-way.
    #[inline]
    fn take(&self, to: u64, pos: u64, item: bool) -> Result<()> {
        let map = self.map();
        let maxsize = self.maxsize();
        let got = map.u64_at(GOT).load(Relaxed);
        if item {
            map.u64_at(C_J_POS).store(pos, Relaxed);
            map.u64_at(C_J_COUNT).store(got, Relaxed);
            map.u64_at(C_J_SEG).store(to, Release);
        }
        if to == RING_ID && map.u64_at(C_SEG).load(Relaxed) == RING_ID {
            map.u64_at(RING + SEG_HEAD).store(pos, Release);
        } else {
            self.advance(to, pos)?;
        }
        if item {
            if maxsize > 0 {
                // A producer may sleep for room: see `wait_until`.
                map.u64_at(GOT).swap(got + 1, SeqCst);
            } else {
                map.u64_at(GOT).store(got + 1, Relaxed);
            }
            map.u64_at(C_J_SEG).store(0, Release);
            if maxsize > 0 {
                self.wake(SPACE_WAITING, SPACE_SEQ);
            }
        }
        Ok(())
    }

    /// Moves the consumers' head forward to `pos` of segment `to` (or leaves it where it is,
    /// if it is there already).
    fn advance(&self, to: u64, pos: u64) -> Result<()> {
        let map = self.map();
        loop {
            let at = map.u64_at(C_SEG).load(Relaxed);
            let seg = self.seg(at)?;
            if at == to {
                if seg.head().load(Relaxed) < pos {
                    seg.head().store(pos, Release);
                }
                return Ok(());
            }
            let next = seg.next().load(Acquire);
            if next == 0 {
                return Err(corrupt("the consumers' segment chain"));
            }
            seg.head().store(seg.tail().load(Acquire), Release);
            self.leave(seg, next)?;
        }
    }

    /// The consumers found the producers' overflow segment `seg` empty at `pos`: if no producer
    /// is at work, link the ring after it for them (they would on their next put), so that the
    /// overflow's memory is given back now. True if it did.
    #[cold]
    fn back_to_ring(&self, seg: &Seg<'_>, pos: u64) -> Result<bool> {
        let map = self.map();
        if map.u32_at(RING_STATE).load(Acquire) != FREE || !self.lock_now(Side::Producers)? {
            return Ok(false);
        }
        let linked = map.u64_at(P_SEG).load(Relaxed) == seg.id
            && map.u32_at(RING_STATE).load(Acquire) == FREE
            && seg.tail().load(Acquire) == pos;
        let r = if linked {
            self.seg(seg.id).and_then(|from| self.link(from, RING_ID))
        } else {
            Ok(self.seg(seg.id)?)
        };
        self.unlock(Side::Producers);
        r.map(|_| linked)
    }

    /// Moves the consumers from the empty segment `seg` to its successor and frees it.
    fn leave(&self, seg: Seg<'_>, next: u64) -> Result<()> {
        let map = self.map();
        let epoch = map.u64_at(RING_EPOCH).load(Acquire);
        map.u64_at(C_LEAVING_EPOCH).store(epoch, Relaxed);
        map.u64_at(C_LEAVING).store(seg.id, Release);
        map.u64_at(C_SEG).store(next, Relaxed);
        map.u64_at(C_TAIL).store(0, Relaxed);
        let id = seg.id;
        drop(seg);
        self.free_segment(id, epoch)?;
        map.u64_at(C_LEAVING).store(0, Release);
        Ok(())
    }

    /// Frees a segment the consumers left (again, after a consumer died doing it: it is then
    /// done only if not done yet).
    fn free_segment(&self, id: u64, epoch: u64) -> Result<()> {
        let map = self.map();
        if id == RING_ID {
            // Unless the producers took it back meanwhile (which they do only once it is free).
            if map.u64_at(RING_EPOCH).load(Acquire) == epoch
                && map.u32_at(RING_STATE).load(Acquire) == IN_CHAIN
            {
                map.u64_at(RING + SEG_NEXT).store(0, Relaxed);
                map.u32_at(RING_STATE).store(FREE, Release);
            }
            return Ok(());
        }
        let off = id & ID_OFFSET_MASK;
        let len = seg_len(id)?;
        map.u64_at(OVF_LOW).fetch_max(off + len as u64, Release);
        self.region.punch(off, len)?;
        let low = off + len as u64;
        self.region.forget_extents(|o| o < low);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // JoinableQueue.

    pub fn task_done(&self) -> Result<()> {
        let map = self.map();
        let done = map.u64_at(DONE);
        let mut cur = done.load(SeqCst);
        loop {
            if cur >= map.u64_at(PUT).load(SeqCst) {
                return Err(Error::InvalidArgument(
                    "task_done() called too many times".into(),
                ));
            }
            match done.compare_exchange_weak(cur, cur + 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
        if cur + 1 >= map.u64_at(PUT).load(SeqCst) {
            self.wake_joiners();
        }
        Ok(())
    }

    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let map = self.map();
        let deadline = Deadline::after(timeout);
        let unfinished = || {
            let done = map.u64_at(DONE).load(SeqCst);
            map.u64_at(PUT).load(SeqCst) > done
        };
        loop {
            if !unfinished() {
                return Ok(());
            }
            if deadline.passed() {
                return Err(Error::Timeout);
            }
            let waiters = map.u32_at(JOIN_WAITERS);
            let seq: &AtomicU32 = map.u32_at(JOIN_SEQ);
            waiters.fetch_add(1, SeqCst);
            let s = seq.load(SeqCst);
            let r = if unfinished() {
                // In slices: a producer that died counting an item it never published leaves
                // an unfinished task that only settling removes.
                let slice = deadline
                    .remaining()
                    .map_or(LIVENESS_SLICE, |r| r.min(LIVENESS_SLICE));
                sys::futex_wait(seq, s, Some(slice))
            } else {
                Ok(true)
            };
            waiters.fetch_sub(1, SeqCst);
            r.map_err(io)?;
            self.settle_abandoned()?;
        }
    }
}

/// Appends to `out` the `len` bytes of the record whose header is at position `at` of `ring`.
#[inline]
fn append_payload(ring: &[AtomicU64], mask: u64, at: u64, len: usize, out: &mut Vec<u8>) {
    out.reserve(len);
    let mut left = len;
    for i in at + 1..at + 1 + words(len) {
        let w = ring[(i & mask) as usize].load(Relaxed);
        let take = left.min(8);
        out.extend_from_slice(&w.to_le_bytes()[..take]);
        left -= take;
    }
}

/// The length in bytes of the overflow segment `id`.
fn seg_len(id: u64) -> Result<usize> {
    1usize
        .checked_shl((id & ID_SHIFT_MASK) as u32)
        .and_then(|cap| cap.checked_mul(8))
        .and_then(|b| b.checked_add(SEG_DATA))
        .ok_or_else(|| corrupt("a segment id"))
}

fn corrupt(what: &str) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a queue's shared memory holds an impossible value: {what}"),
    ))
}
