//! Randomness for the secrets: the kernel's source, the weak fallback when it
//! has nothing yet, and the generator every secret is drawn from, in one
//! place (as mimalloc's `random.c` and snmalloc's `entropy.h` keep them).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The 128-bit key of [`draw`], set once at initialisation.
static KEY: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Values drawn so far: each draw hashes a number never hashed before.
static DRAWN: AtomicU64 = AtomicU64::new(0);

/// Seeds [`draw`] from the kernel; without entropy yet (early boot), from
/// the address of a stack slot, which still differs between runs under
/// ASLR (the secrets are then not secret from a reader of the process's
/// addresses).
pub fn init() {
    let mut bytes = [0u8; 16];
    if !random_bytes(&mut bytes) {
        // A Weyl sequence by the golden ratio, each byte from the top bits of
        // its product with SplitMix64's first mixing multiplier.
        let mut a = &raw const bytes as u64;
        for byte in bytes.iter_mut() {
            a = a.wrapping_add(0x9e37_79b9_7f4a_7c15);
            *byte = (a.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 56) as u8;
        }
    }
    for (k, half) in KEY.iter().zip(bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(half);
        k.store(u64::from_ne_bytes(word), Relaxed);
    }
}

/// Fills `buf` from the kernel's random source; returns false when it cannot.
fn random_bytes(buf: &mut [u8]) -> bool {
    // SAFETY: the buffer is valid for writes of its length; GRND_NONBLOCK
    // keeps an early-boot call from blocking inside malloc.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    n == buf.len() as isize
}

/// A secret random value: SipHash-2-4 of a fresh counter under the key.
/// SipHash is a pseudorandom function (Aumasson and Bernstein, 2012), so
/// values drawn give away nothing of the key or of each other: a page key
/// recovered from a leaked link tells nothing of another page's, nor does
/// the block order secure mode shows. Costs about 130 instructions (x86_64,
/// straight-line), once per page assigned (and twice more per page
/// shuffled).
pub fn draw() -> u64 {
    let key = [KEY[0].load(Relaxed), KEY[1].load(Relaxed)];
    siphash24(key, DRAWN.fetch_add(1, Relaxed))
}

/// SipHash-2-4 of one 64-bit word (its eight bytes, little-endian), as the
/// reference defines it: two compression rounds per message word (the word,
/// then the length word), four finalisation rounds.
fn siphash24(key: [u64; 2], m: u64) -> u64 {
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    // The length word: 8 bytes, in the top byte.
    for word in [m, 8 << 56] {
        v[3] ^= word;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= word;
    }
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's test vector for an 8-byte message: key bytes 0..16,
    /// message bytes 0..8 (Aumasson and Bernstein, SipHash, appendix A's
    /// vectors, length 8).
    #[test]
    fn siphash_matches_the_reference() {
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        assert_eq!(siphash24(key, 0x0706_0504_0302_0100), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn draws_do_not_repeat() {
        let drawn: std::collections::HashSet<u64> = (0..4096).map(|_| draw()).collect();
        assert_eq!(drawn.len(), 4096, "a value drawn twice");
    }
}
