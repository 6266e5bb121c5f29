//! The flame graph: stacks folded into Brendan Gregg's text format, drawn
//! by inferno as one self-contained SVG (its script is inline).

use crate::heap::{Heap, Measure};
use inferno::flamegraph::{self, Options, color::BasicPalette, color::Palette};
use std::collections::BTreeMap;

pub fn svg(heap: &Heap, measure: Measure) -> Result<Vec<u8>, String> {
    // Root first, frames joined by ';'. Equal stacks are summed here so
    // that each line is one stack; freed (zero) and negative ones (diff
    // profiles) have no width to draw.
    let mut folded: BTreeMap<String, i64> = BTreeMap::new();
    for stack in &heap.stacks {
        let bytes = measure.bytes(&stack.counts);
        if bytes > 0 && !stack.frames.is_empty() {
            // A ';' inside a name would split it into two frames.
            let frames: Vec<String> = stack.frames.iter().rev().map(|f| f.replace(';', ",")).collect();
            *folded.entry(frames.join(";")).or_default() += bytes;
        }
    }
    if folded.is_empty() {
        return Err(format!("{}: no {} to draw", heap.path, measure.name()));
    }
    let lines: Vec<String> = folded.iter().map(|(frames, bytes)| format!("{frames} {bytes}")).collect();

    let mut options = Options::default();
    options.title = format!("{}: {}", heap.path, measure.name());
    options.count_name = "bytes".into();
    options.colors = Palette::Basic(BasicPalette::Mem);
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| format!("drawing the flame graph: {e}"))?;
    Ok(svg)
}
