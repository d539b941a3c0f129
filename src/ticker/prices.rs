//! The seed's random walk: each tick every price is multiplied by
//! `1 + (r - 0.5) * 0.002` with `r` uniform in [0, 1], then rounded to 2 decimals.
//!
//! The generator is xoshiro256++ seeded from the OS CSPRNG (or from `--seed` through
//! SplitMix64, for reproducible tests). It only drives a simulation, so it need not be
//! cryptographic itself; the seed is.

use crate::symbols::spec::SymbolSpec;

/// xoshiro256++ (Blackman & Vigna, public domain algorithm).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds from a number through SplitMix64, as the xoshiro authors recommend.
    pub fn from_seed(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// Seeds from the OS CSPRNG.
    pub fn from_os() -> Result<Rng, getrandom::Error> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)?;
        Ok(Rng::from_seed(u64::from_le_bytes(bytes)))
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// One symbol's current price.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quote {
    pub symbol: String,
    pub price: f64,
    /// Where a real source's price stands (`None`: simulated, and the tick entry has no
    /// `source_ts`/`stale`).
    pub source: Option<SourceStamp>,
}

/// A real price's provenance: the exchange's time of it and whether it is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceStamp {
    /// The exchange's time of the price, ms since the Unix epoch (`None`: no upstream
    /// price yet).
    pub ts_ms: Option<u64>,
    pub stale: bool,
}

/// The prices of every configured symbol, in configured order.
#[derive(Debug, Clone)]
pub struct PriceModel {
    quotes: Vec<Quote>,
    rng: Rng,
    /// The chance that a price moves in a tick (`--sim-activity`); 1 is the seed's walk.
    activity: f64,
}

impl PriceModel {
    pub fn new(symbols: &[SymbolSpec], rng: Rng) -> PriceModel {
        let quotes = symbols
            .iter()
            .map(|s| Quote { symbol: s.name.clone(), price: round2(s.start_price), source: None })
            .collect();
        PriceModel { quotes, rng, activity: 1.0 }
    }

    /// Each price moves in a tick with probability `activity` (a real feed: most
    /// symbols do not move in a given 10 ms).
    pub fn with_activity(mut self, activity: f64) -> PriceModel {
        self.activity = activity.clamp(0.0, 1.0);
        self
    }

    /// Advances every price by one step of the walk.
    pub fn step(&mut self) {
        for q in &mut self.quotes {
            // At 1 no draw is spent on it: the same seed walks exactly as before.
            if self.activity < 1.0 && self.rng.next_f64() >= self.activity {
                continue;
            }
            let r = self.rng.next_f64();
            let next = round2(q.price * (1.0 + (r - 0.5) * 0.002));
            // Rounding can pin a tiny price at 0.00; keep it positive so it can move again.
            q.price = if next > 0.0 { next } else { 0.01 };
        }
    }

    pub fn quotes(&self) -> &[Quote] {
        &self.quotes
    }

    /// Takes over prices published before (a new cluster leader continues from the last
    /// tick instead of the start prices). Symbols this model does not trade are ignored;
    /// prices that are not positive and finite are not taken.
    pub fn restore(&mut self, prices: &[(String, f64)]) {
        for q in &mut self.quotes {
            if let Some((_, p)) = prices.iter().find(|(s, _)| *s == q.symbol)
                && p.is_finite()
                && *p > 0.0
            {
                q.price = *p;
            }
        }
    }
}

/// Rounds to 2 decimals, as the seed's `string.format("%.2f")`.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Simulated quotes `S0`, `S1`, ... at `prices`, for the tests of what is built of them.
#[cfg(test)]
pub(crate) fn simulated(prices: &[f64]) -> Vec<Quote> {
    prices
        .iter()
        .enumerate()
        .map(|(i, &price)| Quote { symbol: format!("S{i}"), price, source: None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols() -> Vec<SymbolSpec> {
        vec![
            SymbolSpec { name: "BTC-USD".into(), start_price: 42000.0 },
            SymbolSpec { name: "SOL-USD".into(), start_price: 95.0 },
        ]
    }

    #[test]
    fn the_same_seed_gives_the_same_walk() {
        let mut a = PriceModel::new(&symbols(), Rng::from_seed(7));
        let mut b = PriceModel::new(&symbols(), Rng::from_seed(7));
        for _ in 0..1000 {
            a.step();
            b.step();
        }
        assert_eq!(a.quotes(), b.quotes());
    }

    #[test]
    fn activity_sets_how_often_a_price_moves() {
        let many: Vec<SymbolSpec> =
            (0..100).map(|i| SymbolSpec { name: format!("S{i}"), start_price: 1000.0 }).collect();
        let moves = |activity: f64| {
            let mut m = PriceModel::new(&many, Rng::from_seed(3)).with_activity(activity);
            let mut moved = 0;
            for _ in 0..100 {
                let before: Vec<f64> = m.quotes().iter().map(|q| q.price).collect();
                m.step();
                moved += m.quotes().iter().zip(before).filter(|(q, b)| q.price != *b).count();
            }
            moved
        };
        assert_eq!(moves(0.0), 0);
        // 10,000 chances at 2 %: about 200 (a price can also round back to itself).
        assert!((100..300).contains(&moves(0.02)), "{}", moves(0.02));
        assert!(moves(1.0) > 9_000);
        // Activity 1 is the seed's walk, draw for draw.
        let mut a = PriceModel::new(&symbols(), Rng::from_seed(7)).with_activity(1.0);
        let mut b = PriceModel::new(&symbols(), Rng::from_seed(7));
        a.step();
        b.step();
        assert_eq!(a.quotes(), b.quotes());
    }

    #[test]
    fn each_step_moves_at_most_a_tenth_of_a_percent_and_keeps_two_decimals() {
        let mut m = PriceModel::new(&symbols(), Rng::from_seed(1));
        for _ in 0..10_000 {
            let before: Vec<f64> = m.quotes().iter().map(|q| q.price).collect();
            m.step();
            for (q, old) in m.quotes().iter().zip(before) {
                assert!((q.price / old - 1.0).abs() <= 0.001 + 0.01 / old, "{old} -> {}", q.price);
                assert_eq!(q.price, round2(q.price));
            }
        }
        assert_eq!(m.quotes()[0].symbol, "BTC-USD");
    }

    #[test]
    fn uniform_draws_stay_in_the_unit_interval() {
        let mut rng = Rng::from_seed(3);
        let mean = (0..100_000)
            .map(|_| rng.next_f64())
            .inspect(|r| assert!((0.0..1.0).contains(r)))
            .sum::<f64>()
            / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01);
    }
}
