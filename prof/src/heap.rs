//! A heap profile as symbolized stacks, each with its four counts.

use crate::profile::Profile;
use crate::symbolize::Symbolizer;
use std::rc::Rc;

pub struct Heap {
    /// The file it was read from, for headers and titles.
    pub path: String,
    /// When it was taken (nanoseconds since the epoch; 0: not said).
    pub time_nanos: i64,
    pub stacks: Vec<Stack>,
}

pub struct Stack {
    /// Function names, the leaf first; a location with inlined calls gives
    /// several.
    pub frames: Vec<Rc<str>>,
    pub counts: Counts,
}

#[derive(Clone, Copy, Default)]
pub struct Counts {
    pub alloc_objects: i64,
    pub alloc_bytes: i64,
    pub inuse_objects: i64,
    pub inuse_bytes: i64,
}

/// Which bytes a report counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Measure {
    InUse,
    Alloc,
}

impl Measure {
    pub fn bytes(self, c: &Counts) -> i64 {
        match self {
            Measure::InUse => c.inuse_bytes,
            Measure::Alloc => c.alloc_bytes,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Measure::InUse => "in-use bytes",
            Measure::Alloc => "allocated bytes",
        }
    }

    /// For a column heading.
    pub fn short_name(self) -> &'static str {
        match self {
            Measure::InUse => "in-use",
            Measure::Alloc => "allocated",
        }
    }

    /// The one a report shows beside this one.
    pub fn other(self) -> Measure {
        match self {
            Measure::InUse => Measure::Alloc,
            Measure::Alloc => Measure::InUse,
        }
    }
}

/// The sample types of a heap profile, as both the allocator and Go name
/// them, found by name since a writer may order them as it likes.
const TYPES: [&str; 4] = ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"];

impl Heap {
    pub fn load(path: &str, symbolizer: &mut Symbolizer) -> Result<Heap, String> {
        let data = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let profile = Profile::parse(&data).map_err(|e| format!("{path}: not a valid profile: {e}"))?;
        Heap::from_profile(path, &profile, symbolizer).map_err(|e| format!("{path}: {e}"))
    }

    fn from_profile(path: &str, profile: &Profile, symbolizer: &mut Symbolizer) -> Result<Heap, String> {
        let mut index = [0; 4];
        for (slot, name) in index.iter_mut().zip(TYPES) {
            *slot = profile.sample_types.iter().position(|t| t == name).ok_or_else(|| {
                format!("not a heap profile: it counts [{}], not {name}", profile.sample_types.join(", "))
            })?;
        }
        // Each location once: a profile names the same ones in many stacks.
        let names: Vec<Vec<Rc<str>>> = profile
            .locations
            .iter()
            .map(|loc| {
                let names = if loc.functions.is_empty() {
                    symbolizer.functions(loc.address, loc.mapping.map(|m| &profile.mappings[m]))
                } else {
                    loc.functions.clone()
                };
                names.into_iter().map(Rc::from).collect()
            })
            .collect();
        let stacks = profile
            .samples
            .iter()
            .map(|s| Stack {
                frames: s.locations.iter().flat_map(|&l| names[l].iter().cloned()).collect(),
                counts: Counts {
                    alloc_objects: s.values[index[0]],
                    alloc_bytes: s.values[index[1]],
                    inuse_objects: s.values[index[2]],
                    inuse_bytes: s.values[index[3]],
                },
            })
            .collect();
        Ok(Heap { path: path.to_owned(), time_nanos: profile.time_nanos, stacks })
    }

    pub fn total(&self) -> Counts {
        self.stacks.iter().fold(Counts::default(), |t, s| Counts {
            alloc_objects: t.alloc_objects + s.counts.alloc_objects,
            alloc_bytes: t.alloc_bytes + s.counts.alloc_bytes,
            inuse_objects: t.inuse_objects + s.counts.inuse_objects,
            inuse_bytes: t.inuse_bytes + s.counts.inuse_bytes,
        })
    }
}
