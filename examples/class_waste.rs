//! Compares candidate slab size-class sets up to `MAX_SMALL` (16 KiB):
//! space lost to rounding, page tails, partially filled pages, and the cost of
//! the size -> class lookup. Set D is the crate's own (`mallocator::size_class`).
//!
//! Run with
//! `cargo run --release --example class_waste --target x86_64-unknown-linux-gnu`;
//! the output is the Markdown in `docs/class-measurements.md`.

use mallocator::size_class::{FINE_LIMIT, MAX_SMALL, MIN_BLOCK, NUM_CLASSES, class_of, class_size, classes};
use std::hint::black_box;
use std::time::Instant;

/// The slab page size (`page::PAGE_SIZE`, which the crate does not export).
const PAGE: usize = 64 * 1024;

/// Lookups per timing run, and timing runs per set (the median is reported).
const LOOKUPS: usize = 10_000_000;
const RUNS: usize = 5;

/// Live-set sizes for the footprint simulation, and seeds averaged per size.
const LIVE_SETS: [usize; 2] = [10_000, 1_000_000];
const SEEDS: u64 = 10;

// ---------------------------------------------------------------------------
// Random numbers: xorshift64*.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    fn uniform(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// Log-uniform in `lo..=hi`: `floor(e^x)`, `x` uniform in `[ln lo, ln(hi + 1))`.
    fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (a, b) = ((lo as f64).ln(), ((hi + 1) as f64).ln());
        ((a + self.unit() * (b - a)).exp() as usize).clamp(lo, hi)
    }

    /// The "typical program" mix: 60% uniform 8..=64, 30% uniform 65..=512,
    /// 10% log-uniform 513..=16384.
    fn typical(&mut self) -> usize {
        let r = self.next() % 10;
        if r < 6 {
            self.uniform(8, 64)
        } else if r < 9 {
            self.uniform(65, 512)
        } else {
            self.log_uniform(513, MAX_SMALL)
        }
    }
}

// ---------------------------------------------------------------------------
// Request-size distributions, as exact probabilities of each size 1..=MAX_SMALL.

type Pmf = Vec<f64>;

fn uniform_pmf(lo: usize, hi: usize) -> Pmf {
    let mut p = vec![0.0; MAX_SMALL + 1];
    for q in &mut p[lo..=hi] {
        *q = 1.0 / (hi - lo + 1) as f64;
    }
    p
}

fn log_uniform_pmf(lo: usize, hi: usize) -> Pmf {
    let mut p = vec![0.0; MAX_SMALL + 1];
    let total = ((hi + 1) as f64 / lo as f64).ln();
    for (n, q) in p.iter_mut().enumerate().take(hi + 1).skip(lo) {
        *q = ((n + 1) as f64 / n as f64).ln() / total;
    }
    p
}

fn typical_pmf() -> Pmf {
    let (a, b, c) = (uniform_pmf(8, 64), uniform_pmf(65, 512), log_uniform_pmf(513, MAX_SMALL));
    (0..=MAX_SMALL).map(|n| 0.6 * a[n] + 0.3 * b[n] + 0.1 * c[n]).collect()
}

// ---------------------------------------------------------------------------
// Lookups. Each is arithmetic (leading_zeros based), like the crate's
// `class_of`, and returns an index into its set's table of block sizes.

/// Set A: powers of two from `MIN_BLOCK`.
#[inline(always)]
fn lookup_pow2(size: usize) -> usize {
    (usize::BITS - (size.max(MIN_BLOCK) - 1).leading_zeros() - MIN_BLOCK.trailing_zeros()) as usize
}

/// Steps of `STEP` bytes up to `FINE`, then `K` classes per doubling (`STEP`,
/// `FINE` and `K` powers of two). Index `i <= FINE / STEP` is `i * STEP` bytes.
#[inline(always)]
fn lookup_stepped<const STEP: usize, const FINE: usize, const K: usize>(size: usize) -> usize {
    if size <= FINE {
        return (size.max(MIN_BLOCK) + STEP - 1) >> STEP.trailing_zeros();
    }
    let s = size - 1;
    let bit = (usize::BITS - 1 - s.leading_zeros()) as usize;
    let group = bit - FINE.trailing_zeros() as usize;
    let step = (s >> (bit - K.trailing_zeros() as usize)) & (K - 1);
    FINE / STEP + 1 + group * K + step
}

/// Set D: the crate's own lookup.
#[inline(always)]
fn lookup_ours(size: usize) -> usize {
    class_of(size)
}

/// The intended block sizes of a stepped set, built without its lookup.
fn stepped_sizes(step: usize, fine: usize, k: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=fine / step).map(|i| i * step).filter(|&s| s >= MIN_BLOCK).collect();
    let mut base = fine;
    while base < MAX_SMALL {
        v.extend((1..=k).map(|j| base + j * base / k));
        base *= 2;
    }
    v
}

/// Times `LOOKUPS` lookups over `sizes` (each input passed through
/// `black_box`, so the loop stays scalar as in `malloc`); returns ns/op.
#[inline(never)]
fn bench<F: Fn(usize) -> usize>(sizes: &[usize], f: F) -> f64 {
    let start = Instant::now();
    let mut sum = 0u64;
    for &s in sizes {
        sum = sum.wrapping_add(f(black_box(s)) as u64);
    }
    black_box(sum);
    start.elapsed().as_nanos() as f64 / sizes.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------

struct ClassSet {
    name: &'static str,
    desc: &'static str,
    lookup: fn(usize) -> usize,
    bench: fn(&[usize]) -> f64,
    /// Block size by lookup index (0 where an index is never returned).
    size_at: Vec<usize>,
    /// The block sizes, smallest first.
    sizes: Vec<usize>,
}

impl ClassSet {
    fn new(
        name: &'static str,
        desc: &'static str,
        lookup: fn(usize) -> usize,
        bench: fn(&[usize]) -> f64,
        sizes: Vec<usize>,
    ) -> ClassSet {
        // Derive the table from the lookup, then check it against the intended
        // sizes: every request gets the smallest class that fits it.
        let mut size_at = Vec::new();
        for n in 1..=MAX_SMALL {
            let i = lookup(n);
            if i >= size_at.len() {
                size_at.resize(i + 1, 0);
            }
            size_at[i] = size_at[i].max(n.max(MIN_BLOCK));
        }
        let mut derived: Vec<usize> = size_at.iter().copied().filter(|&s| s != 0).collect();
        derived.sort_unstable();
        assert_eq!(derived, sizes, "set {name}: the lookup does not produce the intended classes");
        for n in 1..=MAX_SMALL {
            let fit = *sizes.iter().find(|&&s| s >= n.max(MIN_BLOCK)).unwrap();
            assert_eq!(size_at[lookup(n)], fit, "set {name}: size {n}");
        }
        ClassSet { name, desc, lookup, bench, size_at, sizes }
    }

    fn class_size_of(&self, n: usize) -> usize {
        self.size_at[(self.lookup)(n)]
    }

    /// Bytes lost to rounding per byte requested, in %.
    fn rounding_waste(&self, pmf: &Pmf) -> f64 {
        let (mut lost, mut asked) = (0.0, 0.0);
        for (n, &p) in pmf.iter().enumerate().skip(1) {
            lost += p * (self.class_size_of(n) - n) as f64;
            asked += p * n as f64;
        }
        100.0 * lost / asked
    }

    /// Probability mass of each class (by lookup index) under `pmf`.
    fn class_mass(&self, pmf: &Pmf) -> Vec<f64> {
        let mut m = vec![0.0; self.size_at.len()];
        for (n, &p) in pmf.iter().enumerate().skip(1) {
            m[(self.lookup)(n)] += p;
        }
        m
    }
}

fn tail(size: usize) -> usize {
    PAGE - PAGE / size * size
}

fn main() {
    let sets = [
        ClassSet::new(
            "A",
            "powers of two",
            lookup_pow2,
            |v| bench(v, lookup_pow2),
            (MIN_BLOCK.trailing_zeros()..=MAX_SMALL.trailing_zeros()).map(|b| 1 << b).collect(),
        ),
        ClassSet::new(
            "B",
            "16-byte steps to 128, then 2 per doubling",
            lookup_stepped::<16, 128, 2>,
            |v| bench(v, lookup_stepped::<16, 128, 2>),
            stepped_sizes(16, 128, 2),
        ),
        ClassSet::new(
            "C",
            "16-byte steps to 256, then 4 per doubling",
            lookup_stepped::<16, 256, 4>,
            |v| bench(v, lookup_stepped::<16, 256, 4>),
            stepped_sizes(16, 256, 4),
        ),
        ClassSet::new(
            "D",
            "**ours**: 8-byte steps to 256, then 4 per doubling",
            lookup_ours,
            |v| bench(v, lookup_ours),
            classes().map(class_size).collect(),
        ),
        ClassSet::new(
            "E",
            "8-byte steps to 1024, then 8 per doubling",
            lookup_stepped::<8, 1024, 8>,
            |v| bench(v, lookup_stepped::<8, 1024, 8>),
            stepped_sizes(8, 1024, 8),
        ),
    ];
    // D must describe the real code.
    assert_eq!(FINE_LIMIT, 256);
    assert_eq!(sets[3].sizes.len(), classes().count());
    for c in classes() {
        assert_eq!(sets[3].size_at[c], class_size(c));
    }
    assert!(sets[3].size_at.len() <= NUM_CLASSES);

    let target = format!("{}-bit {}", usize::BITS, std::env::consts::ARCH);
    println!("## Size-class sets compared ({target}, MIN_BLOCK = {MIN_BLOCK}, page = 64 KiB)\n");
    println!("| set | classes | smallest | largest | worst rounding above 256 B | description |");
    println!("|---|---:|---:|---:|---:|---|");
    for s in &sets {
        let worst =
            (FINE_LIMIT + 1..=MAX_SMALL).map(|n| (s.class_size_of(n) - n) as f64 / n as f64).fold(0.0f64, f64::max);
        println!(
            "| {} | {} | {} | {} | {:.1}% | {} |",
            s.name,
            s.sizes.len(),
            s.sizes[0],
            s.sizes[s.sizes.len() - 1],
            100.0 * worst,
            s.desc
        );
    }

    // Internal fragmentation.
    let typical = typical_pmf();
    let dists: [(&str, Pmf); 4] = [
        ("uniform 1..256", uniform_pmf(1, 256)),
        ("uniform 1..4096", uniform_pmf(1, 4096)),
        ("log-uniform 8..16384", log_uniform_pmf(8, MAX_SMALL)),
        ("typical mix", typical.clone()),
    ];
    println!("\n## Internal fragmentation (bytes lost to rounding / bytes requested)\n");
    println!("Exact expectations over each distribution (requests below MIN_BLOCK count their rounding up too).");
    println!("The typical mix is 60% uniform 8..64, 30% uniform 65..512, 10% log-uniform 513..16384.\n");
    print!("| set |");
    for (d, _) in &dists {
        print!(" {d} |");
    }
    println!("\n|---|{}", "---:|".repeat(dists.len()));
    for s in &sets {
        print!("| {} |", s.name);
        for (_, pmf) in &dists {
            print!(" {:.2}% |", s.rounding_waste(pmf));
        }
        println!();
    }

    // Page tails.
    println!("\n## Page-tail waste (64 KiB page minus blocks * size; segment header ignored)\n");
    println!("| set | mean tail, weighted by typical mix | as % of page | unweighted mean | worst class |");
    println!("|---|---:|---:|---:|---:|");
    for s in &sets {
        let mass = s.class_mass(&typical);
        let weighted: f64 =
            mass.iter().zip(&s.size_at).filter(|(m, _)| **m > 0.0).map(|(m, &z)| m * tail(z) as f64).sum();
        let mean = s.sizes.iter().map(|&z| tail(z) as f64).sum::<f64>() / s.sizes.len() as f64;
        let (worst, worst_size) = s.sizes.iter().map(|&z| (tail(z), z)).max().unwrap();
        let worst = if worst == 0 { "0 B".to_string() } else { format!("{worst} B (class {worst_size})") };
        println!(
            "| {} | {:.0} B | {:.2}% | {:.0} B | {} |",
            s.name,
            weighted,
            100.0 * weighted / PAGE as f64,
            mean,
            worst
        );
    }

    // Footprint of a live set: rounding + page tails + partially filled pages.
    println!("\n## Footprint of a live set drawn from the typical mix\n");
    println!("N sizes drawn; per class, pages = ceil(blocks / blocks_per_page); overhead = (pages * 64 KiB -");
    println!("requested) / requested. Mean of {SEEDS} seeds; every set sees the same draws. \"Touched\" is the");
    println!("number of classes the mix can reach; \"half-page slack\" is touched * 32 KiB, the expected");
    println!("cost of one half-empty page per class.\n");
    print!("| set | touched | half-page slack |");
    for n in LIVE_SETS {
        print!(" pages (N={n}) | overhead (N={n}) | of which rounding |");
    }
    println!("\n|---|---:|---:|{}", "---:|---:|---:|".repeat(LIVE_SETS.len()));
    let mut rows: Vec<String> = sets
        .iter()
        .map(|s| {
            let touched = s.class_mass(&typical).iter().filter(|&&m| m > 0.0).count();
            format!("| {} | {} | {} KiB |", s.name, touched, touched * 32)
        })
        .collect();
    for n in LIVE_SETS {
        let mut acc = vec![(0.0, 0.0, 0.0); sets.len()];
        for seed in 0..SEEDS {
            let mut rng = Rng::new(seed + 1);
            let mut hist = vec![0u64; MAX_SMALL + 1];
            for _ in 0..n {
                hist[rng.typical()] += 1;
            }
            let requested: u64 = hist.iter().enumerate().map(|(z, &c)| z as u64 * c).sum();
            for (s, a) in sets.iter().zip(&mut acc) {
                let mut blocks = vec![0u64; s.size_at.len()];
                for (z, &c) in hist.iter().enumerate().skip(1) {
                    blocks[(s.lookup)(z)] += c;
                }
                let (mut pages, mut block_bytes) = (0u64, 0u64);
                for (&b, &z) in blocks.iter().zip(&s.size_at) {
                    if b > 0 {
                        pages += b.div_ceil((PAGE / z) as u64);
                        block_bytes += b * z as u64;
                    }
                }
                a.0 += pages as f64;
                a.1 += (pages * PAGE as u64 - requested) as f64 / requested as f64;
                a.2 += (block_bytes - requested) as f64 / requested as f64;
            }
        }
        for (row, a) in rows.iter_mut().zip(&acc) {
            let k = SEEDS as f64;
            row.push_str(&format!(" {:.1} | {:.1}% | {:.1}% |", a.0 / k, 100.0 * a.1 / k, 100.0 * a.2 / k));
        }
    }
    for row in rows {
        println!("{row}");
    }

    // Lookup cost.
    let mut rng = Rng::new(0xC1A5);
    let sizes: Vec<usize> = (0..LOOKUPS).map(|_| rng.typical()).collect();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    let baseline = median((0..RUNS).map(|_| bench(&sizes, |z| z)).collect());
    let baseline_sorted = median((0..RUNS).map(|_| bench(&sorted, |z| z)).collect());
    println!("\n## Size -> class lookup cost\n");
    println!("{LOOKUPS} lookups of sizes drawn from the typical mix (precomputed), each input through");
    println!("`black_box` so the loop stays scalar, results summed; median of {RUNS} runs. \"Net\" subtracts the");
    println!("same loop with an identity lookup ({baseline:.2} ns/op random, {baseline_sorted:.2} sorted). \"Sorted\"");
    println!("runs the same sizes in ascending order, so the fine/coarse branch is always predicted: the");
    println!("arithmetic alone. All lookups are arithmetic (leading_zeros based), none uses a table.\n");
    println!("| set | ns/op (random order) | net | ns/op (sorted) | net |");
    println!("|---|---:|---:|---:|---:|");
    for s in &sets {
        let t = median((0..RUNS).map(|_| (s.bench)(&sizes)).collect());
        let u = median((0..RUNS).map(|_| (s.bench)(&sorted)).collect());
        println!("| {} | {:.2} | {:.2} | {:.2} | {:.2} |", s.name, t, t - baseline, u, u - baseline_sorted);
    }
}
