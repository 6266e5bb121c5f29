//! The profile as pprof's `profile.proto` (github.com/google/pprof,
//! `proto/profile.proto`), the format `go tool pprof` and most profile
//! viewers read. Protocol buffers are written by hand: a top-level field may
//! come in any order and repeat, so the file is streamed; only the small
//! nested messages (a sample, a location) are built first, in stack buffers.
//!
//! Locations carry addresses and mappings, no names: the reader symbolizes
//! from the mapped files, as it does for any native program.

use super::gzip::Gzip;
use super::maps::Maps;
use super::stack::call_site;
use super::store::{Bucket, Counts, MAX_FRAMES, Store};
use super::symbols;
use crate::os::{self, OS_PAGE};

/// `string_table`: index 0 must be "". Mapping file names and build ids
/// follow these.
const STRINGS: [&[u8]; 8] =
    [b"", b"alloc_objects", b"count", b"alloc_space", b"bytes", b"inuse_objects", b"inuse_space", b"space"];
/// (type, unit) string indexes of the four values of every sample.
const SAMPLE_TYPES: [(u64, u64); 4] = [(1, 2), (3, 4), (5, 2), (6, 4)];

/// Field numbers of `Profile`.
mod field {
    pub const SAMPLE_TYPE: u32 = 1;
    pub const SAMPLE: u32 = 2;
    pub const MAPPING: u32 = 3;
    pub const LOCATION: u32 = 4;
    pub const STRING_TABLE: u32 = 6;
    pub const TIME_NANOS: u32 = 9;
    pub const PERIOD_TYPE: u32 = 11;
    pub const PERIOD: u32 = 12;
    pub const DEFAULT_SAMPLE_TYPE: u32 = 14;
}

/// A nested message under construction. The largest is a sample: 64 packed
/// location ids of up to 5 bytes and four values of up to 10.
struct Msg {
    buf: [u8; 512],
    len: usize,
}

impl Msg {
    fn new() -> Msg {
        Msg { buf: [0; 512], len: 0 }
    }

    fn varint(&mut self, mut v: u64) {
        loop {
            let more = v >= 0x80;
            self.buf[self.len] = (v as u8 & 0x7f) | (u8::from(more) << 7);
            self.len += 1;
            v >>= 7;
            if !more {
                return;
            }
        }
    }

    fn uint(&mut self, field: u32, v: u64) {
        self.varint(u64::from(field) << 3);
        self.varint(v);
    }

    fn packed(&mut self, field: u32, values: &[u64]) {
        self.varint(u64::from(field) << 3 | 2);
        self.varint(values.iter().map(|&v| varint_len(v)).sum::<usize>() as u64);
        for &v in values {
            self.varint(v);
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn varint_len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

/// A length-delimited top-level field.
fn put(out: &mut Gzip, field: u32, body: &[u8]) {
    let mut head = Msg::new();
    head.varint(u64::from(field) << 3 | 2);
    head.varint(body.len() as u64);
    out.write(head.bytes());
    out.write(body);
}

fn put_uint(out: &mut Gzip, field: u32, v: u64) {
    let mut m = Msg::new();
    m.uint(field, v);
    out.write(m.bytes());
}

fn value_type(kind: u64, unit: u64) -> Msg {
    let mut m = Msg::new();
    m.uint(1, kind);
    m.uint(2, unit);
    m
}

/// Which moment a profile shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum View {
    Now,
    /// When the estimated bytes in use were highest (see `store`).
    Peak,
}

/// Writes the whole profile. False if memory for the location table could
/// not be had or a write failed.
pub fn write(out: &mut Gzip, store: &Store, maps: &Maps, rate: usize, view: View) -> bool {
    let mut frames = 0;
    store.for_each_bucket(|b| frames += b.frames().len());
    let Some(mut locations) = Locations::new(frames) else { return false };

    for (kind, unit) in SAMPLE_TYPES {
        put(out, field::SAMPLE_TYPE, value_type(kind, unit).bytes());
    }
    store.for_each_bucket(|b| {
        let counts = match view {
            View::Now => b.counts,
            View::Peak => store.at_peak(b),
        };
        // A stack that had allocated nothing yet at the peak is left out.
        if view == View::Now || counts.alloc_objects > 0.0 {
            put(out, field::SAMPLE, sample(b, counts, &mut locations).bytes());
        }
    });
    for s in STRINGS {
        put(out, field::STRING_TABLE, s);
    }
    // Each mapping's file name and build id go into the string table just
    // before it (a repeated field's elements keep their order, however the
    // other fields interleave), so that no table of them need be kept.
    let mut strings = STRINGS.len() as u64;
    for (i, m) in maps.code().enumerate() {
        let mut msg = Msg::new();
        msg.uint(1, i as u64 + 1);
        msg.uint(2, m.start as u64);
        msg.uint(3, m.end as u64);
        msg.uint(4, m.offset as u64);
        put(out, field::STRING_TABLE, m.path);
        msg.uint(5, strings);
        strings += 1;
        let mut hex = [0; symbols::BUILD_ID_HEX];
        let id = symbols::build_id(m.path, &mut hex);
        if !id.is_empty() {
            put(out, field::STRING_TABLE, id);
            msg.uint(6, strings);
            strings += 1;
        }
        put(out, field::MAPPING, msg.bytes());
    }
    locations.for_each(|id, addr| {
        let mut msg = Msg::new();
        msg.uint(1, id);
        if let Some((mapping, _)) = maps.find(addr) {
            msg.uint(2, mapping as u64);
        }
        msg.uint(3, addr as u64);
        put(out, field::LOCATION, msg.bytes());
    });
    let time = match view {
        View::Peak if store.peak.time_nanos != 0 => store.peak.time_nanos,
        _ => super::now_nanos(),
    };
    put_uint(out, field::TIME_NANOS, time);
    put(out, field::PERIOD_TYPE, value_type(7, 4).bytes());
    put_uint(out, field::PERIOD, rate as u64);
    put_uint(out, field::DEFAULT_SAMPLE_TYPE, 6);
    true
}

/// A bucket as a `Sample`: location ids innermost first, then the values.
fn sample(b: &Bucket, c: Counts, locations: &mut Locations) -> Msg {
    let mut ids = [0u64; MAX_FRAMES];
    let frames = b.frames();
    for (id, &f) in ids.iter_mut().zip(frames) {
        *id = locations.id(call_site(f));
    }
    let round = |x: f64| if x > 0.0 { (x + 0.5) as u64 } else { 0 };
    let mut msg = Msg::new();
    msg.packed(1, &ids[..frames.len()]);
    msg.packed(2, &[round(c.alloc_objects), round(c.alloc_space), round(c.inuse_objects), round(c.inuse_space)]);
    msg
}

/// Distinct addresses and their location ids (from 1), in an open-addressed
/// table with room for every frame of every bucket.
struct Locations {
    slots: *mut (usize, u64),
    cap: usize,
    next_id: u64,
}

impl Locations {
    fn new(frames: usize) -> Option<Locations> {
        let cap = (2 * frames + 16).next_power_of_two();
        let bytes = (cap * size_of::<(usize, u64)>()).next_multiple_of(OS_PAGE);
        let slots = os::map_aligned(bytes, OS_PAGE).cast::<(usize, u64)>();
        (!slots.is_null()).then_some(Locations { slots, cap, next_id: 1 })
    }

    fn slot(&mut self, i: usize) -> &mut (usize, u64) {
        // SAFETY: `i < cap`; the table is our zeroed mapping, used by one
        // thread (the writer, under the profile lock).
        unsafe { &mut *self.slots.add(i) }
    }

    fn id(&mut self, addr: usize) -> u64 {
        // Fibonacci hashing (2^32 / golden ratio): return addresses differ
        // in their low bits, which the product carries upwards.
        let mut i = addr.wrapping_mul(0x9e37_79b9) & (self.cap - 1);
        loop {
            let next_id = self.next_id;
            let s = self.slot(i);
            if s.1 == 0 {
                *s = (addr, next_id);
                self.next_id += 1;
                return next_id;
            }
            if s.0 == addr {
                return s.1;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    fn for_each(&mut self, mut f: impl FnMut(u64, usize)) {
        for i in 0..self.cap {
            let (addr, id) = *self.slot(i);
            if id != 0 {
                f(id, addr);
            }
        }
    }
}

impl Drop for Locations {
    fn drop(&mut self) {
        let bytes = (self.cap * size_of::<(usize, u64)>()).next_multiple_of(OS_PAGE);
        // SAFETY: the table is our mapping, no longer used.
        unsafe { os::unmap(self.slots.cast(), bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_encode_as_protobuf_does() {
        let mut m = Msg::new();
        m.varint(1);
        m.varint(300);
        m.varint(u64::MAX);
        assert_eq!(m.bytes(), [1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!([varint_len(0), varint_len(127), varint_len(128), varint_len(u64::MAX)], [1, 1, 2, 10]);
    }
}
