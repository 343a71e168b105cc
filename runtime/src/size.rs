//! Byte sizes in configuration files: a plain number of bytes, or a string with a unit.
//!
//! Both servers' size fields use this module (`#[serde(with = "sitecast_runtime::size")]`), so
//! `batch_bytes = 4194304` and `batch_bytes = "4MiB"` mean the same everywhere, and
//! [`serialize`] writes the exact unit spelling back (`"4MiB"`).

use serde::{Deserialize, Deserializer};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Parse a byte size: a plain number of bytes or a number with a unit (`B`, `KB`, `KiB`,
/// `MB`, `MiB`, `GB`, `GiB`, `TB`, `TiB`; `K`, `M`, `G`, `T` are the binary units),
/// case-insensitive, with an optional space between number and unit.
///
/// # Errors
/// A message saying what is wrong: no number, an unknown unit, or a size beyond `u64`.
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (write a number of bytes or e.g. \"4MiB\")"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => KIB,
        "mb" => 1000 * 1000,
        "mib" | "m" => MIB,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => GIB,
        "tb" => 1000 * 1000 * 1000 * 1000,
        "tib" | "t" => 1024 * GIB,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Serde `deserialize_with` for a `u64` byte size: a TOML/JSON integer or a [`parse`] string.
///
/// # Errors
/// A negative number, a float, or a string [`parse`] refuses.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Num(u64),
        Text(String),
    }
    match Size::deserialize(d) {
        Ok(Size::Num(n)) => Ok(n),
        Ok(Size::Text(t)) => parse(&t).map_err(serde::de::Error::custom),
        Err(_) => Err(serde::de::Error::custom(
            "expected a size: a number of bytes (at least 0) or a string such as \"4MiB\"",
        )),
    }
}

/// The shortest exact spelling of `n`: `"4MiB"`, `"10GiB"`, or the plain number when no
/// binary unit divides it (`0`, `1000`).
#[must_use]
pub fn display(n: u64) -> String {
    for (unit, size) in [
        ("TiB", 1024 * GIB),
        ("GiB", GIB),
        ("MiB", MIB),
        ("KiB", KIB),
    ] {
        if n != 0 && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    n.to_string()
}

/// Serde `serialize_with` for a byte size: a [`display`] string when a binary unit divides it
/// (what `--print-config` shows), the number otherwise. [`deserialize`] reads both back.
///
/// # Errors
/// The serializer's.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` passes a reference
pub fn serialize<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    let text = display(*n);
    if text.bytes().all(|b| b.is_ascii_digit()) {
        s.serialize_u64(*n)
    } else {
        s.serialize_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "deserialize")]
        size: u64,
    }

    #[test]
    fn numbers_and_units() {
        assert_eq!(parse("4MiB").unwrap(), 4 * MIB);
        assert_eq!(parse("4 mib").unwrap(), 4 * MIB);
        assert_eq!(parse("64KiB").unwrap(), 65536);
        assert_eq!(parse("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse("2g").unwrap(), 2 * GIB);
        assert_eq!(parse("17").unwrap(), 17);
        assert!(parse("12 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse("MiB").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("1.5MiB").is_err());
        assert!(parse("99999999999TiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn display_is_exact_and_reads_back() {
        for n in [
            0,
            1,
            1000,
            1024,
            4 * MIB,
            4 * MIB + 1,
            10 * GIB,
            3 * 1024 * GIB,
            u64::MAX,
        ] {
            assert_eq!(parse(&display(n)).unwrap(), n, "{n}");
        }
        assert_eq!(display(4 * MIB), "4MiB");
        assert_eq!(display(268_435_456), "256MiB");
        assert_eq!(display(1000), "1000");
    }

    #[test]
    fn toml_takes_both_forms() {
        let t: T = toml::from_str("size = \"4MiB\"").unwrap();
        assert_eq!(t.size, 4 * MIB);
        let t: T = toml::from_str("size = 4194304").unwrap();
        assert_eq!(t.size, 4 * MIB);
        let e = toml::from_str::<T>("size = -3").err().unwrap().to_string();
        assert!(e.contains("expected a size"), "{e}");
        let e = toml::from_str::<T>("size = \"4 furlongs\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("furlongs"), "{e}");
    }
}
