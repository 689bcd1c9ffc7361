//! A hasher for maps keyed by packet identifier.
//!
//! Packet ids are `u16`s looked up on every acknowledgement, so SipHash (the
//! std default, built to resist flooding of arbitrary keys) is wasted work:
//! with only 65,535 possible keys a flood cannot make a map longer than that
//! anyway. A multiplicative (Fibonacci) hash spreads the bits over the whole
//! word, which matters because `hashbrown` takes its control byte from the
//! top bits and its bucket from the bottom ones.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// 2^64 / golden ratio, odd: multiplication by it is a bijection that mixes
/// low input bits into high output bits.
const FIBONACCI_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Hashes the integer keys written into it; see the module doc for why.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PacketIdHasher {
    hash: u64,
}

impl Hasher for PacketIdHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u16` keys; kept correct for any other key type.
        for &byte in bytes {
            self.hash =
                (self.hash.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI_MULTIPLIER);
        }
    }

    fn write_u16(&mut self, value: u16) {
        self.hash = (u64::from(value) ^ self.hash).wrapping_mul(FIBONACCI_MULTIPLIER);
    }
}

pub(crate) type PacketIdMap<V> = HashMap<u16, V, BuildHasherDefault<PacketIdHasher>>;
pub(crate) type PacketIdSet = HashSet<u16, BuildHasherDefault<PacketIdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_ids_hash_to_distinct_values() {
        let mut seen = HashSet::new();
        for id in 0..=u16::MAX {
            let mut hasher = PacketIdHasher::default();
            hasher.write_u16(id);
            assert!(seen.insert(hasher.finish()));
        }
    }

    #[test]
    fn map_works_with_the_hasher() {
        let mut map: PacketIdMap<u32> = PacketIdMap::default();
        for id in 1..=1000u16 {
            map.insert(id, u32::from(id) * 2);
        }
        assert_eq!(map.get(&500), Some(&1000));
        assert_eq!(map.len(), 1000);
    }
}
