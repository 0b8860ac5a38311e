//! A small, fast, non-cryptographic hasher for the view's indexes: the "Fx" hash of rustc and Firefox,
//! with a final mix (murmur3's) so that every input bit reaches the low bits hash tables index by.
//!
//! The keys are Uniqueids and Linkedids from Asterisk, not input an attacker chooses freely, and `decide`
//! must stay fast over 100,000 rows; std's SipHash is a large share of a lookup at that size.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed with [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The Fx hash: for each word, rotate, xor and multiply.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // the multiply leaves the low bits depending only on the words' low bytes (for ids such as
        // `1795520552.1234` the varying digits sit in the high bytes); a final mix spreads them
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn distinguishes_close_ids() {
        let b = BuildHasherDefault::<FxHasher>::default();
        let ids = [
            "1795520552.4",
            "1795520552.5",
            "1795520552.40",
            "1795520552.04",
            "",
            "a",
            "a\0",
        ];
        let hashes: std::collections::HashSet<u64> = ids.iter().map(|s| b.hash_one(s)).collect();
        assert_eq!(hashes.len(), ids.len());
    }

    #[test]
    fn spreads_sequential_ids_over_the_low_bits() {
        // 4,096 Asterisk-like ids must land in many of 4,096 buckets (a table indexes by the low bits)
        let b = BuildHasherDefault::<FxHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..4096)
            .map(|i| b.hash_one(format!("1795520552.{i}")) & 4095)
            .collect();
        assert!(buckets.len() > 2000, "{} buckets used", buckets.len());
    }
}
