//! `MALLOCATOR_LEAKS=1`: at exit, the stacks whose sampled blocks are still
//! live, largest first, on stderr. Estimates, like every figure of a sampled
//! profile: `MALLOCATOR_PROFILE_RATE=1` samples every block and makes them
//! exact.

use super::maps::Maps;
use super::stack::call_site;
use super::store::{Bucket, Store};
use super::symbols;
use crate::diag::options;
use crate::diag::text::Line;

/// Stacks listed; the rest are summed in the header line.
const TOP: usize = 10;

pub fn report(store: &Store) {
    // The largest stacks, largest first: (bytes, bucket).
    let mut top = [(0.0f64, core::ptr::null::<Bucket>()); TOP];
    let (mut stacks, mut bytes, mut blocks) = (0u64, 0.0, 0.0);
    store.for_each_bucket(|b| {
        let c = b.counts;
        if c.inuse_space < 0.5 {
            return;
        }
        stacks += 1;
        bytes += c.inuse_space;
        blocks += c.inuse_objects;
        if let Some(at) = top.iter().position(|&(v, _)| c.inuse_space > v) {
            top.copy_within(at..TOP - 1, at + 1);
            top[at] = (c.inuse_space, b);
        }
    });
    let mut head = Line::new();
    let noun: &[u8] = if stacks == 1 { b" stack holds " } else { b" stacks hold " };
    head.push(b"mallocator: leaks: ").dec(stacks).push(noun).dec(bytes as u64).push(b" bytes in ");
    head.dec((blocks + 0.5) as u64).push(b" blocks at exit (estimated: one sample per ");
    head.dec(options::profile_rate() as u64).push(b" bytes)").newline().write_to(2);
    if store.dropped != 0 {
        let mut lost = Line::new();
        lost.push(b"mallocator: leaks: ").dec(store.dropped).push(b" samples lost (no memory for the profile)");
        lost.newline().write_to(2);
    }
    let Some(maps) = Maps::read() else { return };
    for (rank, &(_, b)) in top.iter().take_while(|(_, b)| !b.is_null()).enumerate() {
        // SAFETY: buckets live in the store's arena, which is never unmapped,
        // and the caller holds the store.
        let b = unsafe { &*b };
        let mut line = Line::new();
        line.push(b"mallocator: leak ").dec(rank as u64 + 1).push(b": ").dec(b.counts.inuse_space as u64);
        line.push(b" bytes in ").dec((b.counts.inuse_objects + 0.5) as u64).push(b" blocks allocated at");
        line.newline().write_to(2);
        for (depth, &f) in b.frames().iter().enumerate() {
            let addr = call_site(f);
            let mut line = Line::new();
            line.push(b"mallocator:     #").dec(depth as u64).push(b" ");
            match maps.find(addr) {
                Some((_, m)) => symbols::describe(&mut line, addr, &m),
                None => {
                    line.push(b"0x").hex(addr);
                }
            }
            line.newline().write_to(2);
        }
    }
}
