//! Durations as people read them: 850ms, 4.2s, 5m12s, 3h04m, 2d03h.

pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scale() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(4_250), "4.2s");
        assert_eq!(duration_ms(312_000), "5m12s");
        assert_eq!(duration_ms(11_040_000), "3h04m");
        assert_eq!(duration_ms(183_600_000), "2d03h");
    }
}
