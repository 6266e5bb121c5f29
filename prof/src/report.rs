//! The text reports: `top` (one profile by function) and `diff` (two).

use crate::heap::{Heap, Measure};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// One function's bytes in a profile.
#[derive(Default)]
struct Function {
    /// Where it is the leaf: what it allocated itself.
    flat: i64,
    /// Where it is anywhere on the stack: what it and its callees did.
    cum: i64,
    /// `flat` in the other measure.
    other_flat: i64,
}

fn by_function(heap: &Heap, measure: Measure) -> HashMap<Rc<str>, Function> {
    let mut functions: HashMap<Rc<str>, Function> = HashMap::new();
    for stack in &heap.stacks {
        let bytes = measure.bytes(&stack.counts);
        if let Some(leaf) = stack.frames.first() {
            let f = functions.entry(leaf.clone()).or_default();
            f.flat += bytes;
            f.other_flat += measure.other().bytes(&stack.counts);
        }
        // A recursive function is on the stack several times but holds the
        // bytes once. Stacks are short: a linear look back is cheapest.
        for (i, frame) in stack.frames.iter().enumerate() {
            if !stack.frames[..i].contains(frame) {
                functions.entry(frame.clone()).or_default().cum += bytes;
            }
        }
    }
    functions
}

pub fn top(heap: &Heap, measure: Measure, limit: usize) -> String {
    let whole = measure.bytes(&heap.total());
    let mut rows: Vec<_> = by_function(heap, measure).into_iter().collect();
    rows.sort_by(|(a_name, a), (b_name, b)| b.flat.cmp(&a.flat).then(b.cum.cmp(&a.cum)).then(a_name.cmp(b_name)));
    let mut lines = header(heap);
    lines.push(format!("Top {} of {} functions by {}:", rows.len().min(limit), rows.len(), measure.name()));
    lines.push(format!(
        "{:>12} {:>7} {:>12} {:>7} {:>12}  function",
        "flat",
        "flat%",
        "cum",
        "cum%",
        measure.other().short_name()
    ));
    lines.extend(rows.iter().take(limit).map(|(name, f)| {
        let (flat, cum) = (percent(f.flat, whole), percent(f.cum, whole));
        format!("{:>12} {flat:>7} {:>12} {cum:>7} {:>12}  {name}", f.flat, f.cum, f.other_flat)
    }));
    lines.join("\n") + "\n"
}

/// Frames shown of each stack of [`stacks`]: the innermost, where the
/// difference between stacks usually is.
const STACK_FRAMES: usize = 16;

/// The whole stacks that hold the most, largest first, each with its frames
/// (leaf first). Stacks equal once named are one.
pub fn stacks(heap: &Heap, measure: Measure, limit: usize) -> String {
    let mut by_stack: HashMap<&[Rc<str>], (i64, i64, i64)> = HashMap::new();
    for stack in &heap.stacks {
        let objects = match measure {
            Measure::InUse => stack.counts.inuse_objects,
            Measure::Alloc => stack.counts.alloc_objects,
        };
        let e = by_stack.entry(&stack.frames).or_default();
        *e = (e.0 + measure.bytes(&stack.counts), e.1 + objects, e.2 + measure.other().bytes(&stack.counts));
    }
    let mut rows: Vec<_> = by_stack.into_iter().filter(|(_, (bytes, _, _))| *bytes > 0).collect();
    rows.sort_by(|(a, x), (b, y)| y.0.cmp(&x.0).then_with(|| a.cmp(b)));
    let whole = measure.bytes(&heap.total());
    let mut lines = header(heap);
    lines.push(format!("Top {} of {} stacks by {}:", rows.len().min(limit), rows.len(), measure.name()));
    for (frames, (bytes, objects, other)) in rows.iter().take(limit) {
        lines.push(format!(
            "{bytes:>12} {:>7} in {objects} objects ({other} {})",
            percent(*bytes, whole),
            measure.other().short_name()
        ));
        lines.extend(frames.iter().take(STACK_FRAMES).map(|f| format!("{:>14}{f}", "")));
        if frames.len() > STACK_FRAMES {
            lines.push(format!("{:>14}... {} frames more", "", frames.len() - STACK_FRAMES));
        }
    }
    lines.join("\n") + "\n"
}

/// The file and its totals, the first lines of `top` and `stacks`.
fn header(heap: &Heap) -> Vec<String> {
    let total = heap.total();
    vec![
        format!("File: {}", heap.path),
        format!(
            "Total: {} in-use bytes in {} objects; {} allocated bytes in {} objects; {} stacks",
            total.inuse_bytes,
            total.inuse_objects,
            total.alloc_bytes,
            total.alloc_objects,
            heap.stacks.len()
        ),
    ]
}

pub fn diff(a: &Heap, b: &Heap, measure: Measure, limit: usize) -> String {
    let (before, after) = (by_function(a, measure), by_function(b, measure));
    let flat = |functions: &HashMap<Rc<str>, Function>, name: &str| functions.get(name).map_or(0, |f| f.flat);
    let names: BTreeSet<&Rc<str>> = before.keys().chain(after.keys()).collect();
    let mut rows: Vec<(&str, i64, i64)> = names
        .into_iter()
        .map(|name| (&**name, flat(&before, name), flat(&after, name)))
        // Functions that are only callers have nothing of their own to compare.
        .filter(|&(_, x, y)| x != 0 || y != 0)
        .collect();
    // By growth; the sort is stable, so ties stay in name order.
    rows.sort_by_key(|&(_, x, y)| std::cmp::Reverse(y - x));
    let (total_a, total_b) = (measure.bytes(&a.total()), measure.bytes(&b.total()));
    let mut lines = vec![
        format!("A: {}: {total_a} {}", a.path, measure.name()),
        format!("B: {}: {total_b} {} ({:+})", b.path, measure.name(), total_b - total_a),
        format!("Top {} of {} functions by growth in {}:", rows.len().min(limit), rows.len(), measure.name()),
        format!("{:>12} {:>12} {:>12}  function", "delta", "A", "B"),
    ];
    lines.extend(rows.iter().take(limit).map(|&(name, x, y)| format!("{:>+12} {x:>12} {y:>12}  {name}", y - x)));
    lines.join("\n") + "\n"
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.2}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::{Counts, Stack};

    fn stack(frames: &[&str], inuse_bytes: i64, alloc_bytes: i64) -> Stack {
        let counts = Counts { inuse_bytes, alloc_bytes, ..Counts::default() };
        Stack { frames: frames.iter().map(|&f| Rc::from(f)).collect(), counts }
    }

    fn heap(stacks: Vec<Stack>) -> Heap {
        Heap { path: "test.pb.gz".into(), time_nanos: 0, stacks }
    }

    /// The table's rows as (flat, cum, other, name).
    fn rows(report: &str) -> Vec<(i64, i64, i64, String)> {
        report
            .lines()
            .skip(4)
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].parse().unwrap(), f[2].parse().unwrap(), f[4].parse().unwrap(), f[5].to_owned())
            })
            .collect()
    }

    #[test]
    fn recursion_counts_once_in_cum() {
        let h = heap(vec![stack(&["leaf", "rec", "rec", "rec", "main"], 100, 0), stack(&["rec", "main"], 10, 0)]);
        let report = top(&h, Measure::InUse, 20);
        let rows = rows(&report);
        assert_eq!(rows[0], (100, 100, 0, "leaf".into()));
        assert_eq!(rows[1], (10, 110, 0, "rec".into()));
        assert_eq!(rows[2], (0, 110, 0, "main".into()));
        assert!(report.contains("Top 3 of 3 functions by in-use bytes"), "{report}");
    }

    #[test]
    fn alloc_sorts_by_allocated_bytes_and_limit_cuts() {
        let h = heap(vec![stack(&["a"], 300, 100), stack(&["b"], 200, 900), stack(&["c"], 100, 0)]);
        let report = top(&h, Measure::Alloc, 2);
        assert_eq!(rows(&report), [(900, 900, 200, "b".into()), (100, 100, 300, "a".into())]);
        assert!(report.contains("Top 2 of 3 functions by allocated bytes"), "{report}");
        assert!(report.lines().nth(4).unwrap().contains("90.00%"), "{report}");
    }

    #[test]
    fn empty_profile_has_no_percentages() {
        let h = heap(vec![stack(&["a"], 0, 0)]);
        assert!(top(&h, Measure::InUse, 20).lines().nth(4).unwrap().contains(" - "));
    }

    #[test]
    fn stacks_sum_equal_ones_and_sort_by_bytes() {
        let mut deep: Vec<&str> = vec!["leaf"; 20];
        deep.push("main");
        let h = heap(vec![
            stack(&["a", "main"], 100, 150),
            stack(&["b", "main"], 300, 300),
            stack(&["a", "main"], 250, 0),
            stack(&deep, 1, 1),
            stack(&["freed"], 0, 500),
        ]);
        let report = stacks(&h, Measure::InUse, 2);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[2], "Top 2 of 3 stacks by in-use bytes:");
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["350", "53.76%", "in", "0", "objects", "(150", "allocated)"]
        );
        assert_eq!(lines[4..6].iter().map(|l| l.trim()).collect::<Vec<_>>(), ["a", "main"]);
        assert_eq!(lines[6].split_whitespace().next(), Some("300"));
        let all = stacks(&h, Measure::InUse, 10);
        assert!(all.contains("... 5 frames more"), "{all}");
        assert!(!all.contains("freed"), "a stack holding nothing is left out");
    }

    #[test]
    fn diff_sorts_by_growth() {
        let a = heap(vec![stack(&["same"], 50, 0), stack(&["shrinks"], 300, 0), stack(&["grows", "caller"], 100, 0)]);
        let b = heap(vec![stack(&["same"], 50, 0), stack(&["shrinks"], 200, 0), stack(&["grows", "caller"], 700, 0)]);
        let report = diff(&a, &b, Measure::InUse, 20);
        let rows: Vec<Vec<&str>> = report.lines().skip(4).map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows,
            [["+600", "100", "700", "grows"], ["+0", "50", "50", "same"], ["-100", "300", "200", "shrinks"]]
        );
        assert!(report.contains("B: test.pb.gz: 950 in-use bytes (+500)"), "{report}");
    }
}
