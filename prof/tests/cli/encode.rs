//! A writer of `profile.proto` for the tests, apart from the tool's reader
//! so that the two check each other. It writes the string table last, as
//! the allocator does.

use std::io::Write;

pub struct ProfileWriter {
    strings: Vec<String>,
    /// Every top-level field but the string table.
    body: Vec<u8>,
    ids: u64,
}

impl ProfileWriter {
    /// A heap profile's sample types, in the allocator's order: each
    /// sample's values are [alloc_objects, alloc_space, inuse_objects,
    /// inuse_space].
    pub fn heap() -> ProfileWriter {
        ProfileWriter::with_types(&[
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
        ])
    }

    pub fn with_types(types: &[(&str, &str)]) -> ProfileWriter {
        let mut w = ProfileWriter { strings: vec![String::new()], body: Vec::new(), ids: 0 };
        for &(kind, unit) in types {
            let mut m = Vec::new();
            uint(&mut m, 1, w.string(kind));
            uint(&mut m, 2, w.string(unit));
            bytes(&mut w.body, 1, &m);
        }
        w
    }

    /// Field 11 `period_type` and 14 `default_sample_type`, which a reader
    /// must take in stride.
    pub fn allocator_extras(&mut self) {
        let mut m = Vec::new();
        uint(&mut m, 1, self.string("space"));
        uint(&mut m, 2, self.string("bytes"));
        bytes(&mut self.body, 11, &m);
        let inuse = self.string("inuse_space");
        uint(&mut self.body, 14, inuse);
    }

    /// Field 9 `time_nanos`: when the profile was taken.
    pub fn time_nanos(&mut self, nanos: u64) {
        uint(&mut self.body, 9, nanos);
    }

    /// `build_id`: "" for none.
    pub fn mapping(&mut self, start: u64, limit: u64, file_offset: u64, filename: &str, build_id: &str) -> u64 {
        let id = self.id();
        let mut m = Vec::new();
        uint(&mut m, 1, id);
        uint(&mut m, 2, start);
        uint(&mut m, 3, limit);
        uint(&mut m, 4, file_offset);
        uint(&mut m, 5, self.string(filename));
        if !build_id.is_empty() {
            uint(&mut m, 6, self.string(build_id));
        }
        bytes(&mut self.body, 3, &m);
        id
    }

    /// A location with only an address, as the allocator writes them.
    pub fn location(&mut self, mapping: u64, address: u64) -> u64 {
        self.location_with_lines(mapping, address, &[])
    }

    /// A location with `line` entries for `functions`, innermost first, as
    /// Go writes them.
    pub fn location_with_lines(&mut self, mapping: u64, address: u64, functions: &[u64]) -> u64 {
        let id = self.id();
        let mut m = Vec::new();
        uint(&mut m, 1, id);
        uint(&mut m, 2, mapping);
        uint(&mut m, 3, address);
        for &f in functions {
            let mut line = Vec::new();
            uint(&mut line, 1, f);
            uint(&mut line, 2, 42);
            bytes(&mut m, 4, &line);
        }
        bytes(&mut self.body, 4, &m);
        id
    }

    pub fn function(&mut self, name: &str) -> u64 {
        let id = self.id();
        let mut m = Vec::new();
        uint(&mut m, 1, id);
        uint(&mut m, 2, self.string(name));
        uint(&mut m, 4, self.string("main.go"));
        bytes(&mut self.body, 5, &m);
        id
    }

    /// A sample: `locations` leaf first, values in sample-type order.
    /// Location ids are packed, values written one field each: readers
    /// must take both.
    pub fn sample(&mut self, locations: &[u64], values: &[i64]) {
        let mut packed = Vec::new();
        for &l in locations {
            varint(&mut packed, l);
        }
        let mut m = Vec::new();
        bytes(&mut m, 1, &packed);
        for &v in values {
            uint(&mut m, 2, v as u64);
        }
        bytes(&mut self.body, 2, &m);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body.clone();
        for s in &self.strings {
            bytes(&mut out, 6, s.as_bytes());
        }
        out
    }

    fn string(&mut self, s: &str) -> u64 {
        self.strings.push(s.to_owned());
        self.strings.len() as u64 - 1
    }

    fn id(&mut self) -> u64 {
        self.ids += 1;
        self.ids
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn uint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A gzip member of stored (uncompressed) deflate blocks of at most
/// `block` bytes (RFC 1951 section 3.2.4), as the allocator writes them.
pub fn gzip_stored(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let blocks: Vec<&[u8]> = if data.is_empty() { vec![data] } else { data.chunks(block).collect() };
    for (i, chunk) in blocks.iter().enumerate() {
        let len = chunk.len() as u16;
        out.push(u8::from(i + 1 == blocks.len()));
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend(crc.sum().to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

/// Compressed as `gzip` would.
pub fn gzip_deflated(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}
