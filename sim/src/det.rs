//! Deterministic pseudo-randomness derived from (seed, ids), so a run is reproducible without
//! storing per-endpoint random state.

/// SplitMix64 finaliser: cheap, well mixed, and stable across platforms and releases.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub(crate) fn hash_str(s: &str) -> u64 {
    // FNV-1a, then mixed: std's hasher is randomly keyed per process, which would break determinism.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// A value in [0, 1) from the given parts.
pub(crate) fn unit(parts: &[u64]) -> f64 {
    let mut h = 0u64;
    for p in parts {
        h = mix(h ^ *p);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}
