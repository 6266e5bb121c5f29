//! The messages of pprof's `profile.proto` (github.com/google/pprof,
//! `proto/profile.proto`) that a heap profile needs, decoded with their
//! cross-references checked and resolved: string indexes become strings,
//! ids become indexes into the decoded tables.

use crate::proto::Fields;
use flate2::read::MultiGzDecoder;
use std::collections::HashMap;
use std::io::Read;

pub struct Profile {
    /// `sample_type[i].type`: what each sample's `values[i]` counts.
    pub sample_types: Vec<String>,
    /// When the profile was taken (nanoseconds since the epoch; 0: not
    /// said).
    pub time_nanos: i64,
    pub samples: Vec<Sample>,
    pub mappings: Vec<Mapping>,
    pub locations: Vec<Location>,
}

pub struct Sample {
    /// Indexes into `Profile::locations`, leaf first.
    pub locations: Vec<usize>,
    pub values: Vec<i64>,
}

/// A mapped file, as `/proc/<pid>/maps` showed it.
pub struct Mapping {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: String,
    /// The file's build id (in hex, for an ELF); empty if not written.
    pub build_id: String,
}

pub struct Location {
    /// Index into `Profile::mappings`; None if the writer knew none.
    pub mapping: Option<usize>,
    pub address: u64,
    /// Names from the `line` entries, the innermost inlined function first;
    /// empty where the writer left symbolization to the reader.
    pub functions: Vec<String>,
}

/// Field numbers of the top-level `Profile` message.
mod field {
    pub const SAMPLE_TYPE: u64 = 1;
    pub const SAMPLE: u64 = 2;
    pub const MAPPING: u64 = 3;
    pub const LOCATION: u64 = 4;
    pub const FUNCTION: u64 = 5;
    pub const STRING_TABLE: u64 = 6;
    pub const TIME_NANOS: u64 = 9;
}

impl Profile {
    /// Decodes a profile file's contents: gzipped, as pprof writes them (in
    /// any number of members and blocks of any kind), or a bare message,
    /// which pprof reads too.
    pub fn parse(data: &[u8]) -> Result<Profile, String> {
        if !data.starts_with(&[0x1f, 0x8b]) {
            return decode(data);
        }
        let mut raw = Vec::new();
        MultiGzDecoder::new(data).read_to_end(&mut raw).map_err(|e| format!("bad gzip data: {e}"))?;
        decode(&raw)
    }
}

/// Messages that are decoded after the string table, which the writer may
/// put last (the allocator does).
#[derive(Default)]
struct Parts<'a> {
    sample_types: Vec<&'a [u8]>,
    samples: Vec<&'a [u8]>,
    mappings: Vec<&'a [u8]>,
    locations: Vec<&'a [u8]>,
    functions: Vec<&'a [u8]>,
}

fn decode(msg: &[u8]) -> Result<Profile, String> {
    let mut strings = Vec::new();
    let mut parts = Parts::default();
    let mut time_nanos = 0;
    for f in Fields::new(msg) {
        let (number, value) = f?;
        let list = match number {
            field::STRING_TABLE => {
                strings.push(String::from_utf8_lossy(value.bytes()?).into_owned());
                continue;
            }
            field::TIME_NANOS => {
                time_nanos = value.uint()? as i64;
                continue;
            }
            field::SAMPLE_TYPE => &mut parts.sample_types,
            field::SAMPLE => &mut parts.samples,
            field::MAPPING => &mut parts.mappings,
            field::LOCATION => &mut parts.locations,
            field::FUNCTION => &mut parts.functions,
            _ => continue,
        };
        list.push(value.bytes()?);
    }
    let strings = Strings(&strings);

    let sample_types = parts.sample_types.iter().map(|m| sample_type(m, &strings)).collect::<Result<Vec<_>, _>>()?;
    let functions = id_map(&parts.functions, |m| function(m, &strings))?;
    let (mapping_ids, mappings) = id_table(&parts.mappings, |m| mapping(m, &strings))?;
    let (location_ids, locations) = id_table(&parts.locations, |m| location(m, &mapping_ids, &functions))?;
    let samples =
        parts.samples.iter().map(|m| sample(m, &location_ids, sample_types.len())).collect::<Result<Vec<_>, _>>()?;
    Ok(Profile { sample_types, time_nanos, samples, mappings, locations })
}

struct Strings<'a>(&'a [String]);

impl Strings<'_> {
    fn get(&self, index: u64) -> Result<&str, String> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(String::as_str)
            .ok_or_else(|| format!("string index {index} is past the string table"))
    }
}

/// Decodes messages that carry an id (field 1): the id of each, and what
/// `decode` makes of it.
fn with_ids<T>(
    messages: &[&[u8]],
    mut decode: impl FnMut(&[u8]) -> Result<T, String>,
) -> Result<Vec<(u64, T)>, String> {
    messages
        .iter()
        .map(|m| {
            let mut id = 0;
            for f in Fields::new(m) {
                if let (1, v) = f? {
                    id = v.uint()?;
                }
            }
            Ok((id, decode(m)?))
        })
        .collect()
}

fn id_map<T>(messages: &[&[u8]], decode: impl FnMut(&[u8]) -> Result<T, String>) -> Result<HashMap<u64, T>, String> {
    Ok(with_ids(messages, decode)?.into_iter().collect())
}

/// The decoded messages in order, and each id's index among them.
fn id_table<T>(
    messages: &[&[u8]],
    decode: impl FnMut(&[u8]) -> Result<T, String>,
) -> Result<(HashMap<u64, usize>, Vec<T>), String> {
    let mut index = HashMap::new();
    let mut table = Vec::new();
    for (i, (id, t)) in with_ids(messages, decode)?.into_iter().enumerate() {
        index.insert(id, i);
        table.push(t);
    }
    Ok((index, table))
}

fn sample_type(msg: &[u8], strings: &Strings) -> Result<String, String> {
    let mut kind = 0;
    for f in Fields::new(msg) {
        if let (1, v) = f? {
            kind = v.uint()?;
        }
    }
    Ok(strings.get(kind)?.to_owned())
}

fn function(msg: &[u8], strings: &Strings) -> Result<String, String> {
    let (mut name, mut system_name) = (0, 0);
    for f in Fields::new(msg) {
        match f? {
            (2, v) => name = v.uint()?,
            (3, v) => system_name = v.uint()?,
            _ => {}
        }
    }
    // `system_name` is the mangled one; a writer may give only that.
    let name = strings.get(name)?;
    Ok(if name.is_empty() { strings.get(system_name)? } else { name }.to_owned())
}

fn mapping(msg: &[u8], strings: &Strings) -> Result<Mapping, String> {
    let mut m =
        Mapping { memory_start: 0, memory_limit: 0, file_offset: 0, filename: String::new(), build_id: String::new() };
    for f in Fields::new(msg) {
        match f? {
            (2, v) => m.memory_start = v.uint()?,
            (3, v) => m.memory_limit = v.uint()?,
            (4, v) => m.file_offset = v.uint()?,
            (5, v) => m.filename = strings.get(v.uint()?)?.to_owned(),
            (6, v) => m.build_id = strings.get(v.uint()?)?.to_owned(),
            _ => {}
        }
    }
    Ok(m)
}

fn location(
    msg: &[u8],
    mapping_ids: &HashMap<u64, usize>,
    functions: &HashMap<u64, String>,
) -> Result<Location, String> {
    let mut loc = Location { mapping: None, address: 0, functions: Vec::new() };
    for f in Fields::new(msg) {
        match f? {
            (2, v) => {
                let id = v.uint()?;
                // Id 0 means "no mapping" (e.g. JIT code or a kernel frame).
                if id != 0 {
                    let index = mapping_ids
                        .get(&id)
                        .ok_or_else(|| format!("a location names mapping {id}, which is missing"))?;
                    loc.mapping = Some(*index);
                }
            }
            (3, v) => loc.address = v.uint()?,
            (4, v) => {
                if let Some(name) = line_function(v.bytes()?, functions)? {
                    loc.functions.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(loc)
}

/// The function of a `Line`; None for function id 0 (not known).
fn line_function<'f>(msg: &[u8], functions: &'f HashMap<u64, String>) -> Result<Option<&'f str>, String> {
    let mut id = 0;
    for f in Fields::new(msg) {
        if let (1, v) = f? {
            id = v.uint()?;
        }
    }
    if id == 0 {
        return Ok(None);
    }
    functions
        .get(&id)
        .map(|name| Some(name.as_str()))
        .ok_or_else(|| format!("a line names function {id}, which is missing"))
}

fn sample(msg: &[u8], location_ids: &HashMap<u64, usize>, value_count: usize) -> Result<Sample, String> {
    let (mut ids, mut values) = (Vec::new(), Vec::new());
    for f in Fields::new(msg) {
        let (number, v) = f?;
        match number {
            1 => v.push_repeated(&mut ids)?,
            2 => v.push_repeated(&mut values)?,
            _ => {}
        }
    }
    if values.len() != value_count {
        return Err(format!("a sample has {} values for {value_count} sample types", values.len()));
    }
    let locations = ids
        .iter()
        .map(|id| {
            location_ids.get(id).copied().ok_or_else(|| format!("a sample names location {id}, which is missing"))
        })
        .collect::<Result<_, _>>()?;
    // int64 on the wire: a diff profile may hold negative values.
    Ok(Sample { locations, values: values.into_iter().map(|v| v as i64).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-delimited field of the top-level message.
    fn bytes_field(number: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![number << 3 | 2, body.len() as u8];
        f.extend(body);
        f
    }

    /// One sample type ("space"), one location (id 7), and `sample`.
    fn with_sample(sample: &[u8]) -> Vec<u8> {
        let mut msg = bytes_field(2, sample);
        msg.extend(bytes_field(1, &[0x08, 1]));
        msg.extend(bytes_field(4, &[0x08, 7, 0x18, 0x90, 0x4e]));
        msg.extend(bytes_field(6, b""));
        msg.extend(bytes_field(6, b"space"));
        msg
    }

    #[test]
    fn resolves_references_written_before_the_string_table() {
        let p = decode(&with_sample(&[0x0a, 1, 7, 0x10, 42])).unwrap();
        assert_eq!(p.sample_types, ["space"]);
        assert_eq!(p.samples[0].locations, [0]);
        assert_eq!(p.samples[0].values, [42]);
        assert_eq!(p.locations[0].address, 10000);
        assert!(p.locations[0].mapping.is_none());
    }

    #[test]
    fn the_time_reads_back() {
        let mut msg = with_sample(&[0x0a, 1, 7, 0x10, 42]);
        msg.extend([9 << 3, 0x80, 0x94, 0xeb, 0xdc, 0x03]);
        assert_eq!(decode(&msg).unwrap().time_nanos, 1_000_000_000);
        assert_eq!(decode(&with_sample(&[0x0a, 1, 7, 0x10, 42])).unwrap().time_nanos, 0);
    }

    #[test]
    fn negative_values_read_back() {
        let minus_one = [0x0a, 1, 7, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode(&with_sample(&minus_one)).unwrap().samples[0].values, [-1]);
    }

    #[test]
    fn dangling_references_are_errors() {
        let unknown_location = with_sample(&[0x0a, 1, 8, 0x10, 42]);
        assert_eq!(decode(&unknown_location).err().unwrap(), "a sample names location 8, which is missing");
        let two_values = with_sample(&[0x0a, 1, 7, 0x12, 2, 1, 2]);
        assert_eq!(decode(&two_values).err().unwrap(), "a sample has 2 values for 1 sample types");
        let bad_string = bytes_field(1, &[0x08, 9]);
        assert_eq!(decode(&bad_string).err().unwrap(), "string index 9 is past the string table");
        let unknown_mapping = bytes_field(4, &[0x08, 1, 0x10, 3]);
        assert_eq!(decode(&unknown_mapping).err().unwrap(), "a location names mapping 3, which is missing");
        let unknown_function = bytes_field(4, &[0x08, 1, 0x22, 2, 0x08, 5]);
        assert_eq!(decode(&unknown_function).err().unwrap(), "a line names function 5, which is missing");
    }

    #[test]
    fn line_entries_name_functions_innermost_first() {
        // Functions 1 "inner" and 2 "outer"; location 1 with lines for both.
        let mut msg = bytes_field(5, &[0x08, 1, 0x10, 1]);
        msg.extend(bytes_field(5, &[0x08, 2, 0x18, 2]));
        msg.extend(bytes_field(4, &[0x08, 1, 0x22, 2, 0x08, 1, 0x22, 2, 0x08, 2, 0x22, 0]));
        for s in [&b""[..], b"inner", b"outer"] {
            msg.extend(bytes_field(6, s));
        }
        let p = decode(&msg).unwrap();
        // The second function has only a system name; the last line none.
        assert_eq!(p.locations[0].functions, ["inner", "outer"]);
    }

    #[test]
    fn a_broken_gzip_stream_is_an_error() {
        assert!(Profile::parse(&[0x1f, 0x8b, 8, 0, 0, 0]).err().unwrap().starts_with("bad gzip data"));
    }
}
