//! The timeline: bytes in use over time from a sequence of profiles of one
//! process (its numbered dumps, its peak and exit profiles), split by the
//! stacks that held the most, as a stacked area chart in one SVG file
//! (heaptrack's "consumed" view). Each profile is a point at the time it was
//! taken; the areas are drawn straight between points.

use crate::heap::{Heap, Measure};
use std::collections::HashMap;
use std::fmt::Write;
use std::rc::Rc;

/// Drawing area and margins, in SVG units (pixels at 100 %).
const WIDTH: f64 = 1000.0;
const PLOT_HEIGHT: f64 = 380.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
/// Below the plot: the time axis, then one legend row per band.
const AXIS: f64 = 40.0;
const LEGEND_ROW: f64 = 18.0;
/// Longest label, in characters, before it is cut with an ellipsis.
const LABEL_CHARS: usize = 110;
/// Band colours (Tableau 10, which stays apart for common colour
/// blindness), then grey for the stacks left out.
const COLORS: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const OTHER: &str = "#d9d9d9";

/// One band: a stack (or the rest) and its bytes in each profile.
struct Band {
    label: String,
    /// Its frames, leaf first (empty: the stacks left out).
    frames: Vec<Rc<str>>,
    bytes: Vec<i64>,
}

/// The chart of `heaps`, which must be at least two and each say when it
/// was taken; they are drawn in time order. `limit` stacks get a band of
/// their own: those that held the most at their highest.
pub fn svg(heaps: &[Heap], measure: Measure, limit: usize) -> Result<String, String> {
    if heaps.len() < 2 {
        return Err(format!("a timeline needs two profiles or more, not {}", heaps.len()));
    }
    if let Some(h) = heaps.iter().find(|h| h.time_nanos == 0) {
        return Err(format!("{}: the profile does not say when it was taken", h.path));
    }
    let mut order: Vec<&Heap> = heaps.iter().collect();
    order.sort_by_key(|h| h.time_nanos);
    let start = order[0].time_nanos;
    let seconds: Vec<f64> = order.iter().map(|h| (h.time_nanos - start) as f64 / 1e9).collect();
    let bands = bands(&order, measure, limit);
    Ok(draw(&order, &seconds, &bands, measure))
}

/// The `limit` stacks that held the most at their highest, largest first,
/// then the rest (if it ever held anything).
fn bands(heaps: &[&Heap], measure: Measure, limit: usize) -> Vec<Band> {
    let mut by_stack: HashMap<&[Rc<str>], Vec<i64>> = HashMap::new();
    for (i, heap) in heaps.iter().enumerate() {
        for stack in &heap.stacks {
            let bytes = measure.bytes(&stack.counts);
            if bytes > 0 {
                by_stack.entry(&stack.frames).or_insert_with(|| vec![0; heaps.len()])[i] += bytes;
            }
        }
    }
    let mut stacks: Vec<(&[Rc<str>], Vec<i64>)> = by_stack.into_iter().collect();
    let highest = |bytes: &[i64]| bytes.iter().copied().max().unwrap_or(0);
    stacks.sort_by(|(a, x), (b, y)| highest(y).cmp(&highest(x)).then_with(|| a.cmp(b)));
    let rest = stacks.split_off(limit.min(stacks.len()));
    let shown: Vec<Vec<&str>> = stacks.iter().map(|(frames, _)| names(frames)).collect();
    let mut bands: Vec<Band> = stacks
        .iter()
        .zip(&shown)
        .map(|((frames, bytes), names)| Band {
            label: label(names, &shown),
            frames: frames.to_vec(),
            bytes: bytes.clone(),
        })
        .collect();
    let mut other = vec![0; heaps.len()];
    for (_, bytes) in &rest {
        for (o, b) in other.iter_mut().zip(bytes) {
            *o += b;
        }
    }
    if other.iter().any(|&b| b > 0) {
        bands.push(Band { label: format!("{} other stacks", rest.len()), frames: Vec::new(), bytes: other });
    }
    bands
}

/// A stack's frames as a label names them: an unnamed address by its
/// file and offset (`0x7f… (libz.so+0x1a2b)` as `libz.so+0x1a2b`), and a
/// function once where inlining repeats it.
fn names(frames: &[Rc<str>]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for frame in frames {
        let name = match frame.strip_prefix("0x").and_then(|f| f.split_once(" (")) {
            Some((_, place)) => place.strip_suffix(')').unwrap_or(place),
            None => frame,
        };
        if names.last() != Some(&name) {
            names.push(name);
        }
    }
    names
}

/// The leaf, then the frames down to the first that tells this stack from
/// the other bands' (stacks often share their innermost frames: an
/// allocation wrapper, the interpreter's allocator), and its caller; cut to
/// a line.
fn label(names: &[&str], all: &[Vec<&str>]) -> String {
    let others = all.iter().filter(|o| o.as_slice() != names);
    let shared = others.map(|o| o.iter().zip(names).take_while(|(a, b)| a == b).count()).max().unwrap_or(0);
    let shown = (shared + 2).min(names.len());
    let mut parts: Vec<&str> = Vec::new();
    for (i, &name) in names[..shown].iter().enumerate() {
        // Only the leaf and the last two: the ones between say nothing new.
        if i == 0 || i + 2 >= shown {
            parts.push(name);
        } else if parts.last() != Some(&"…") {
            parts.push("…");
        }
    }
    if shown < names.len() {
        parts.push("…");
    }
    let mut text = parts.join(" ← ");
    if text.chars().count() > LABEL_CHARS {
        text = text.chars().take(LABEL_CHARS - 1).collect::<String>() + "…";
    }
    text
}

fn draw(heaps: &[&Heap], seconds: &[f64], bands: &[Band], measure: Measure) -> String {
    let totals: Vec<i64> = (0..heaps.len()).map(|i| bands.iter().map(|b| b.bytes[i]).sum()).collect();
    let (y_step, y_max) = byte_ticks(totals.iter().copied().max().unwrap_or(0).max(1) as f64);
    let span = seconds.last().copied().unwrap_or(0.0).max(1e-9);
    let (x_step, _) = ticks(span);
    let plot_width = WIDTH - LEFT - RIGHT;
    let x = |s: f64| LEFT + s / span * plot_width;
    let y = |bytes: f64| TOP + PLOT_HEIGHT - bytes / y_max * PLOT_HEIGHT;
    let height = TOP + PLOT_HEIGHT + AXIS + LEGEND_ROW * bands.len() as f64 + 10.0;

    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let title = format!(
        "{} over time: {} profiles in {}, {} to {}",
        measure.name(),
        heaps.len(),
        duration(span),
        heaps[0].path,
        heaps[heaps.len() - 1].path
    );
    let _ = writeln!(out, "<text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{}</text>", escape(&title));
    // Grid and axes.
    let mut tick = 0.0;
    while tick <= y_max * (1.0 + 1e-9) {
        let ty = y(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_width,
            LEFT - 6.0,
            ty + 4.0,
            bytes_text(tick)
        );
        tick += y_step;
    }
    let mut tick = 0.0;
    while tick <= span * (1.0 + 1e-9) {
        let tx = x(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
             <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + PLOT_HEIGHT,
            TOP + PLOT_HEIGHT + 5.0,
            TOP + PLOT_HEIGHT + 18.0,
            duration_tick(tick, x_step)
        );
        tick += x_step;
    }
    // The bands, the largest at the bottom, each above the ones before.
    let mut base = vec![0i64; heaps.len()];
    for (k, band) in bands.iter().enumerate() {
        let top: Vec<i64> = base.iter().zip(&band.bytes).map(|(b, v)| b + v).collect();
        let mut points = String::new();
        for (i, &t) in top.iter().enumerate() {
            let _ = write!(points, "{:.1},{:.1} ", x(seconds[i]), y(t as f64));
        }
        for (i, &b) in base.iter().enumerate().rev() {
            let _ = write!(points, "{:.1},{:.1} ", x(seconds[i]), y(b as f64));
        }
        let highest = band.bytes.iter().copied().max().unwrap_or(0);
        let stack = if band.frames.is_empty() {
            band.label.clone()
        } else {
            band.frames.iter().map(|f| &**f).collect::<Vec<_>>().join("\n")
        };
        let _ = writeln!(
            out,
            "<polygon class=\"band\" points=\"{}\" fill=\"{}\" stroke=\"white\" stroke-width=\"0.5\">\
             <title>{} at most\n{}</title></polygon>",
            points.trim_end(),
            color(k, band),
            bytes_text(highest as f64),
            escape(&stack)
        );
        base = top;
    }
    // The legend, in the bands' order.
    for (k, band) in bands.iter().enumerate() {
        let ly = TOP + PLOT_HEIGHT + AXIS + LEGEND_ROW * k as f64;
        let highest = band.bytes.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            out,
            "<rect x=\"{LEFT}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text class=\"legend\" x=\"{:.1}\" y=\"{:.1}\">{} (at most {})</text>",
            color(k, band),
            LEFT + 18.0,
            ly + 10.5,
            escape(&band.label),
            bytes_text(highest as f64)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn color(k: usize, band: &Band) -> &'static str {
    if band.frames.is_empty() { OTHER } else { COLORS[k % COLORS.len()] }
}

/// A step of 1, 2 or 5 times a power of ten giving 4 to 10 ticks up to at
/// least `max`, and the last tick.
fn ticks(max: f64) -> (f64, f64) {
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|&s| s >= rough).unwrap_or(10.0 * power);
    (step, (max / step).ceil() * step)
}

/// [`ticks`] in the binary unit the axis shows, so that they read round.
fn byte_ticks(max: f64) -> (f64, f64) {
    let unit = 1024f64.powi((max.max(1.0).log2() / 10.0).floor() as i32);
    let (step, last) = ticks(max / unit);
    (step * unit, last * unit)
}

/// Bytes with binary units: "0", "512 B", "1.5 MiB", "40 MiB".
fn bytes_text(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes == 0.0 {
        return "0".into();
    }
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value < 10.0 && value.fract().abs() > 1e-9 { 1 } else { 0 };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// A tick on the time axis, with the decimals its step needs.
fn duration_tick(seconds: f64, step: f64) -> String {
    let digits = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    format!("{seconds:.digits$} s")
}

fn duration(seconds: f64) -> String {
    if seconds >= 100.0 { format!("{seconds:.0} s") } else { format!("{seconds:.3} s") }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::{Counts, Stack};

    fn heap(time: i64, stacks: &[(&[&str], i64)]) -> Heap {
        let stacks = stacks
            .iter()
            .map(|&(frames, bytes)| Stack {
                frames: frames.iter().map(|&f| Rc::from(f)).collect(),
                counts: Counts { inuse_bytes: bytes, alloc_bytes: 2 * bytes, ..Counts::default() },
            })
            .collect();
        Heap { path: format!("t{time}.pb.gz"), time_nanos: time, stacks }
    }

    #[test]
    fn bands_are_the_stacks_highest_at_their_highest() {
        let heaps = [
            heap(1, &[(&["a", "main"], 100), (&["b", "main"], 300), (&["c"], 10)]),
            heap(2, &[(&["a", "main"], 500), (&["b", "main"], 0), (&["d"], 20), (&["a", "main"], 50)]),
        ];
        let order: Vec<&Heap> = heaps.iter().collect();
        let bands = bands(&order, Measure::InUse, 2);
        let summary: Vec<(&str, &[i64])> = bands.iter().map(|b| (b.label.as_str(), &b.bytes[..])).collect();
        // Equal stacks of one profile add up; the left-out ones are summed.
        assert_eq!(summary, [("a ← main", &[100, 550][..]), ("b ← main", &[300, 0]), ("2 other stacks", &[10, 20])]);
        let all = super::bands(&order, Measure::Alloc, 10);
        assert_eq!(all.len(), 4, "no other band when every stack has its own");
        assert_eq!(all[0].bytes, [200, 1100]);
    }

    #[test]
    fn labels_name_the_leaf_and_what_tells_stacks_apart() {
        let frames = |names: &[&str]| -> Vec<Rc<str>> { names.iter().map(|&f| Rc::from(f)).collect() };
        let a = frames(&["malloc", "malloc", "wrap", "wrap2", "parse", "main", "start"]);
        let b = frames(&["malloc", "wrap", "wrap2", "load", "main", "start"]);
        let c = frames(&["0x7f00 (libz.so+0x1a2b)", "inflate", "main"]);
        let all = [names(&a), names(&b), names(&c)];
        assert_eq!(all[0], ["malloc", "wrap", "wrap2", "parse", "main", "start"]);
        assert_eq!(all[2], ["libz.so+0x1a2b", "inflate", "main"]);
        // a and b share three frames: the fourth tells them apart.
        assert_eq!(label(&all[0], &all), "malloc ← … ← parse ← main ← …");
        assert_eq!(label(&all[1], &all), "malloc ← … ← load ← main ← …");
        assert_eq!(label(&all[2], &all), "libz.so+0x1a2b ← inflate ← …");
        assert_eq!(label(&["only"], &[vec!["only"]]), "only");
        let long = ["x".repeat(300)];
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        assert_eq!(label(&long, std::slice::from_ref(&long)).chars().count(), LABEL_CHARS);
    }

    #[test]
    fn ticks_and_units() {
        assert_eq!(ticks(48.0), (10.0, 50.0));
        assert_eq!(ticks(1.0), (0.2, 1.0));
        assert_eq!(ticks(7_000_000.0), (2_000_000.0, 8_000_000.0));
        // In MiB: 78 MiB of bytes gives steps of 20 MiB up to 80 MiB.
        assert_eq!(byte_ticks(78.0 * 1048576.0), (20.0 * 1048576.0, 80.0 * 1048576.0));
        assert_eq!(byte_ticks(700.0), (200.0, 800.0));
        assert_eq!([bytes_text(0.0), bytes_text(512.0), bytes_text(1536.0)], ["0", "512 B", "1.5 KiB"]);
        assert_eq!(bytes_text(40.0 * 1024.0 * 1024.0), "40 MiB");
        assert_eq!([duration_tick(1.5, 0.5), duration_tick(20.0, 5.0)], ["1.5 s", "20 s"]);
        assert_eq!(escape("a<b> & \"c\""), "a&lt;b&gt; &amp; &quot;c&quot;");
    }

    #[test]
    fn needs_two_timed_profiles() {
        let one = [heap(5, &[(&["a"], 1)])];
        assert_eq!(svg(&one, Measure::InUse, 8).err().unwrap(), "a timeline needs two profiles or more, not 1");
        let untimed = [heap(5, &[(&["a"], 1)]), heap(0, &[(&["a"], 1)])];
        assert_eq!(
            svg(&untimed, Measure::InUse, 8).err().unwrap(),
            "t0.pb.gz: the profile does not say when it was taken"
        );
    }

    #[test]
    fn draws_in_time_order_the_largest_band_lowest() {
        // Given out of order: drawn by time.
        let heaps =
            [heap(3_000_000_000, &[(&["big"], 4000), (&["small"], 1000)]), heap(1_000_000_000, &[(&["big"], 1000)])];
        let svg = svg(&heaps, Measure::InUse, 8).unwrap();
        assert!(svg.starts_with("<?xml") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("in-use bytes over time: 2 profiles in 2.000 s, t1000000000.pb.gz to t3000000000.pb.gz"));
        let polygons: Vec<&str> = svg.match_indices("<polygon").map(|(i, _)| &svg[i..]).collect();
        assert_eq!(polygons.len(), 2);
        // `big` first, from the axis (y 430) at 1 s (x 80) to 4000 bytes of
        // the 5 KiB of the scale at 3 s (x 980).
        assert!(polygons[0].contains("points=\"80.0,355.8 980.0,133.1 980.0,430.0 80.0,430.0\""), "{}", polygons[0]);
        assert!(polygons[0].contains("<title>3.9 KiB at most\nbig</title>"));
        assert!(svg.contains(">small (at most 1000 B)</text>"));
    }
}
