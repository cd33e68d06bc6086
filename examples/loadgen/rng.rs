//! The clients' pseudo-random numbers: xorshift64*, seeded per connection, so a run reproduces
//! from its seed. Also used by the soak benchmark (`examples/soak`).

/// A connection's generator.
#[derive(Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for connection `slot`: the seed and slot mixed by one splitmix64 step, so
    /// neighbouring seeds and slots start far apart.
    pub fn new(seed: u64, slot: u64) -> Rng {
        let mut z = seed.wrapping_add(slot.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng {
            state: (z ^ (z >> 31)).max(1),
        }
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
