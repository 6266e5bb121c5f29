//! The crate as a Rust program's global allocator: collections, strings,
//! over-aligned types and drops on other threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, mpsc};
use std::thread;

#[global_allocator]
static GLOBAL: mallocator::Mallocator = mallocator::Mallocator;

#[repr(align(4096))]
struct PageAligned([u8; 100]);

#[repr(align(64))]
struct CacheLine(u64);

#[test]
fn over_aligned_layouts_are_honoured() {
    let pages: Vec<Box<PageAligned>> = (0..50).map(|i| Box::new(PageAligned([i as u8; 100]))).collect();
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(&**p as *const PageAligned as usize % 4096, 0);
        assert!(p.0.iter().all(|&b| b == i as u8));
    }
    let lines: Vec<CacheLine> = (0..1000).map(CacheLine).collect();
    assert_eq!(lines.as_ptr() as usize % 64, 0);
    assert_eq!(lines.iter().map(|c| c.0).sum::<u64>(), 999 * 1000 / 2);
}

#[test]
fn zeroed_and_growing_allocations() {
    let v = vec![0u64; 1 << 20];
    assert!(v.iter().all(|&x| x == 0));
    let mut s = String::new();
    for i in 0..100_000 {
        s.push_str(&i.to_string());
    }
    assert!(s.starts_with("0123456789101112"));
    let mut big: Vec<u8> = Vec::new();
    for i in 0..(8 << 20) {
        big.push(i as u8);
    }
    assert!(big.iter().enumerate().all(|(i, &b)| b == i as u8));
    big.truncate(10);
    big.shrink_to_fit();
    assert_eq!(big, (0..10).collect::<Vec<u8>>());
}

#[test]
fn threads_share_and_drop_each_others_data() {
    let (tx, rx) = mpsc::channel::<(usize, HashMap<String, Vec<u32>>)>();
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for round in 0..50 {
                    let map: HashMap<String, Vec<u32>> =
                        (0..200).map(|i| (format!("t{t}-r{round}-k{i}"), vec![i as u32; i % 40])).collect();
                    tx.send((t, map)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let shared = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let consumer = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            for (t, map) in rx {
                let total: usize = map.values().map(Vec::len).sum();
                *shared.lock().unwrap().entry(t).or_insert(0) += total;
                // `map` is dropped here, on another thread than its producer.
            }
        })
    };
    producers.into_iter().for_each(|p| p.join().unwrap());
    consumer.join().unwrap();
    let per_map: usize = (0..200).map(|i| i % 40).sum();
    let counts = shared.lock().unwrap();
    assert_eq!(counts.len(), 4);
    assert!(counts.values().all(|&n| n == per_map * 50));
}
