//! Parsing of rates (`5Mbit/s`, `40MiB/s`, `625KB/s`, `1000000`) into bytes per second.

/// Parse a rate into bytes per second.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid rate {s:?}: expected e.g. 5Mbit/s, 40MiB/s, 625KB/s"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "bit" | "bps" => 1.0 / 8.0,
        "Kbit" | "kbit" | "kbps" => 1e3 / 8.0,
        "Mbit" | "mbit" | "Mbps" => 1e6 / 8.0,
        "Gbit" | "gbit" | "Gbps" => 1e9 / 8.0,
        other => return Err(format!("invalid rate {s:?}: unknown unit {other:?}")),
    };
    let v = n * mult;
    if !(1.0..1e15).contains(&v) {
        return Err(format!("invalid rate {s:?}: out of range"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn units() {
        assert_eq!(parse_rate("5Mbit/s").unwrap(), 625_000);
        assert_eq!(parse_rate("5Mbit").unwrap(), 625_000);
        assert_eq!(parse_rate("40MiB/s").unwrap(), 40 << 20);
        assert_eq!(parse_rate("625KB/s").unwrap(), 625_000);
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("5 parsecs").is_err());
    }
}
