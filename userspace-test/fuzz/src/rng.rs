//! The seeded generator every worker draws its calls from, and the seed
//! each thread of a run gets.

/// SplitMix64: small, fast, and the same sequence forever for a seed.
#[derive(Debug, Clone, Copy)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub(crate) fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// The seed of thread `t` of process `p` of a run seeded `seed`.
pub fn thread_seed(seed: u64, p: usize, t: usize) -> u64 {
    let mut r = Rng::new(seed ^ ((p as u64) << 32 | t as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    r.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sequence() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let x: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let y: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(x, y);
        assert_ne!(Rng::new(43).next_u64(), Rng::new(42).next_u64());
        // SplitMix64's published first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_ne!(thread_seed(1, 0, 1), thread_seed(1, 1, 0));
    }
}
