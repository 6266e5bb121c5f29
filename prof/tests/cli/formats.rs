//! Every valid encoding of the file reads the same.

use crate::encode::{ProfileWriter, gzip_deflated, gzip_stored};
use crate::fixture::scratch;
use crate::{tool, tool_ok, write};

fn profile() -> Vec<u8> {
    let mut w = ProfileWriter::heap();
    w.allocator_extras();
    for i in 0..200 {
        let f = w.function(&format!("function_{i:03}"));
        let l = w.location_with_lines(0, 0x1000 + i, &[f]);
        w.sample(&[l], &[1, 100 + i as i64, 1, 100 + i as i64]);
    }
    w.encode()
}

#[test]
fn stored_deflated_concatenated_and_bare_profiles_read_the_same() {
    let raw = profile();
    let dir = scratch("formats");
    let expected = tool_ok(&["top", &write(&dir, "stored.pb.gz", &gzip_stored(&raw, 65535))]).replace("stored", "X");
    assert!(expected.contains("Top 20 of 200 functions"), "{expected}");
    assert!(expected.contains("function_199"), "{expected}");
    // Small stored blocks; two members, each a valid gzip of one half.
    let (head, tail) = raw.split_at(raw.len() / 2);
    let mut two_members = gzip_stored(head, 1000);
    two_members.extend(gzip_deflated(tail));
    for (name, data) in [
        ("blocks", gzip_stored(&raw, 97)),
        ("deflated", gzip_deflated(&raw)),
        ("members", two_members),
        ("bare", raw.clone()),
    ] {
        let report = tool_ok(&["top", &write(&dir, &format!("{name}.pb.gz"), &data)]);
        assert_eq!(report.replace(name, "X"), expected, "{name}");
    }
}

#[test]
fn corrupt_gzip_is_an_error() {
    let mut data = gzip_stored(&profile(), 65535);
    let len = data.len();
    data[len - 8] ^= 1; // the CRC
    let out = tool(&["top", &write(&scratch("bad-crc"), "heap.pb.gz", &data)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad gzip data"), "{}", String::from_utf8_lossy(&out.stderr));
    let truncated = &gzip_deflated(&profile())[..100];
    let out = tool(&["top", &write(&scratch("truncated"), "heap.pb.gz", truncated)]);
    assert_eq!(out.status.code(), Some(1));
}
