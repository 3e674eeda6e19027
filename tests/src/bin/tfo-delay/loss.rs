//! Random packet loss, seeded: each direction of the relay drops a packet
//! with a fixed probability, decided by its own pseudo-random sequence, so a
//! run can be repeated with the same seed (the packets the sequence meets
//! still depend on timing).

/// Drops packets with probability `percent` / 100.
pub struct Loss {
    /// The drop threshold over the full 64-bit range.
    threshold: u64,
    state: u64,
}

impl Loss {
    /// `percent` in 0..=100; `stream` tells the two directions apart.
    pub fn new(percent: f64, seed: u64, stream: u64) -> Loss {
        let threshold = if percent >= 100.0 { u64::MAX } else { (percent.max(0.0) / 100.0 * u64::MAX as f64) as u64 };
        Loss { threshold, state: seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) }
    }

    /// Whether the next packet is lost.
    pub fn drop_next(&mut self) -> bool {
        self.threshold != 0 && splitmix64(&mut self.state) < self.threshold
    }
}

/// SplitMix64: small, fast and good enough to pick packets.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Parses `--loss`'s value: a percentage from 0 to 100.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("--loss takes a percentage from 0 to 100, not {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_close_to_the_percentage_and_repeats_with_the_seed() {
        let count = |percent, seed| {
            let mut loss = Loss::new(percent, seed, 0);
            (0..100_000).filter(|_| loss.drop_next()).count()
        };
        assert_eq!(count(0.0, 1), 0);
        assert_eq!(count(100.0, 1), 100_000);
        let five = count(5.0, 7);
        assert!((4_500..5_500).contains(&five), "{five}");
        assert_eq!(five, count(5.0, 7), "the same seed, the same drops");
        assert_ne!(five, count(5.0, 8));
    }

    #[test]
    fn directions_drop_different_packets() {
        let (mut a, mut b) = (Loss::new(50.0, 3, 0), Loss::new(50.0, 3, 1));
        let same = (0..1000).filter(|_| a.drop_next() == b.drop_next()).count();
        assert!(same < 600, "{same}");
    }

    #[test]
    fn bad_percentages_are_refused() {
        assert_eq!(parse_percent("2.5"), Ok(2.5));
        assert!(parse_percent("-1").is_err() && parse_percent("101").is_err() && parse_percent("x").is_err());
    }
}
