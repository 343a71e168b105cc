//! Checks of values the API stores, shared by its endpoints: labels and rates are refused with a
//! message when they are out of range or malformed, never silently changed.

use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;

use super::{ApiError, ApiResult};
use crate::db::Labels;

/// Longest label key and value (as Kubernetes labels, so selectors written for one read the
/// same for the other).
const MAX_LABEL_LEN: usize = 63;

/// A lifetime given as a humantime duration (`"24h"`, `"30days"`), from 1 s to `max`.
pub(crate) fn ttl(
    field: &str,
    v: &str,
    max: std::time::Duration,
) -> ApiResult<std::time::Duration> {
    let d = humantime::parse_duration(v).map_err(|e| {
        ApiError::bad_request(format!("{field} {v:?}: {e} (e.g. \"24h\", \"30min\")"))
    })?;
    if d < std::time::Duration::from_secs(1) || d > max {
        return Err(ApiError::bad_request(format!(
            "{field} {v:?} is out of range: from 1s to {}",
            humantime::format_duration(max)
        )));
    }
    Ok(d)
}

/// A positive amount in `unit` that the database can hold (`i64::MAX`); null means `none`.
fn check_positive(field: &str, v: Option<u64>, unit: &str, none: &str) -> ApiResult<()> {
    match v {
        Some(0) => Err(ApiError::bad_request(format!(
            "{field} must be more than 0 {unit}, or null for {none}"
        ))),
        Some(n) if i64::try_from(n).is_err() => Err(ApiError::bad_request(format!(
            "{field} {n} is out of range: at most {} {unit}",
            i64::MAX
        ))),
        _ => Ok(()),
    }
}

/// A rate in bytes/s: more than 0, at most what the database holds (`i64::MAX`).
pub(crate) fn check_rate(field: &str, rate: Option<u64>) -> ApiResult<()> {
    check_positive(field, rate, "bytes/s", "no limit")
}

/// A disk quota: 1 byte to 2^63−1 bytes, or null for none.
pub(crate) fn check_quota(field: &str, quota: Option<u64>) -> ApiResult<()> {
    check_positive(field, quota, "bytes", "no quota")
}

/// Most names one HTTPS certificate is issued for.
pub(crate) const MAX_HTTPS_NAMES: usize = 100;

/// The names of a site's HTTPS certificate: DNS names (an optional leading `*.`) or IP
/// addresses, each once, at most [`MAX_HTTPS_NAMES`]. DNS names are compared and stored in
/// lower case, as certificates match them.
pub(crate) fn check_https_names(field: &str, names: &[String]) -> ApiResult<Vec<String>> {
    if names.len() > MAX_HTTPS_NAMES {
        return Err(ApiError::bad_request(format!(
            "{field}: {} names, at most {MAX_HTTPS_NAMES}",
            names.len()
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        let norm = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) if crate::config::is_dns_name(n) => n.to_ascii_lowercase(),
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "{field}: {n:?} is neither a DNS name nor an IP address"
                )))
            }
        };
        if out.contains(&norm) {
            return Err(ApiError::bad_request(format!(
                "{field}: {n:?} is given twice"
            )));
        }
        out.push(norm);
    }
    Ok(out)
}

/// Label keys: 1-63 of `A-Z a-z 0-9 . _ - /`, starting and ending with a letter or digit.
/// Values: at most 63 of `A-Z a-z 0-9 . _ -`, starting and ending with a letter or digit when
/// not empty. Selectors (`k=v,k2!=v2`) stay unambiguous and a label can be printed on one line.
pub(crate) fn check_labels(labels: &Labels) -> ApiResult<()> {
    for (k, v) in labels {
        let bad = |why: &str| ApiError::bad_request(format!("invalid label {k:?}={v:?}: {why}"));
        if k.is_empty() || k.len() > MAX_LABEL_LEN {
            return Err(bad("a key is 1 to 63 characters"));
        }
        if !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        {
            return Err(bad("a key has only letters, digits and . _ - /"));
        }
        if v.len() > MAX_LABEL_LEN {
            return Err(bad("a value is at most 63 characters"));
        }
        if !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(bad("a value has only letters, digits and . _ -"));
        }
        for s in [k.as_str(), v.as_str()] {
            let ends_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
            if !ends_ok(s.chars().next()) || !ends_ok(s.chars().last()) {
                return Err(bad("keys and values start and end with a letter or digit"));
            }
        }
    }
    Ok(())
}

/// Deserialize labels, refusing a key given twice (serde's map would keep the last silently).
pub(crate) fn unique_labels<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    struct Unique;
    impl<'de> Visitor<'de> for Unique {
        type Value = Labels;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of label keys to string values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Labels, A::Error> {
            let mut out = Labels::new();
            while let Some((k, v)) = m.next_entry::<String, String>()? {
                if out.contains_key(&k) {
                    return Err(A::Error::custom(format!("label {k:?} is given twice")));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique)
}

/// [`unique_labels`] for an optional field (`null` or absent is `None`).
pub(crate) fn unique_labels_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Labels>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "unique_labels")] Labels);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// For `PATCH` fields that can be set to `null`: absent is `None`, `null` is `Some(None)`
/// (use with `#[serde(default)]`).
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn https_names_are_dns_names_or_addresses_each_once() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            check_https_names(
                "n",
                &names(&["Edge.Farm17.example", "*.lan", "10.0.0.1", "::1"])
            )
            .unwrap(),
            names(&["edge.farm17.example", "*.lan", "10.0.0.1", "::1"])
        );
        for bad in [
            "",
            "a b",
            "a..b",
            "-a.b",
            "a_b.c",
            "edge.example.",
            "é.example",
            "1.2.3.4:80",
        ] {
            let e = check_https_names("n", &names(&[bad])).unwrap_err();
            assert!(e.message.contains("neither a DNS name"), "{bad:?}: {e:?}");
        }
        let e = check_https_names("n", &names(&["a.example", "A.example"])).unwrap_err();
        assert!(e.message.contains("given twice"), "{e:?}");
        let many: Vec<String> = (0..=MAX_HTTPS_NAMES)
            .map(|i| format!("n{i}.example"))
            .collect();
        assert!(check_https_names("n", &many).is_err());
        assert!(check_https_names("n", &many[..MAX_HTTPS_NAMES]).is_ok());
    }

    #[test]
    fn labels_are_checked_not_stored_as_given() {
        assert!(check_labels(&labels(&[("province", "gansu"), ("tier", "")])).is_ok());
        assert!(check_labels(&labels(&[("example.com/role", "hub-1")])).is_ok());
        for (k, v) in [
            ("a\nb", "x"),
            ("", "x"),
            ("k", "a,b"),
            ("k", "x y"),
            ("k=", "v"),
            ("-k", "v"),
            ("k", "v-"),
            ("k", "é"),
        ] {
            assert!(check_labels(&labels(&[(k, v)])).is_err(), "{k:?}={v:?}");
        }
        assert!(check_labels(&labels(&[(&"k".repeat(64), "v")])).is_err());
        assert!(check_labels(&labels(&[("k", &"v".repeat(64))])).is_err());
    }

    #[test]
    fn a_label_given_twice_is_refused() {
        #[derive(Deserialize, Debug)]
        struct R {
            #[serde(default, deserialize_with = "unique_labels_opt")]
            labels: Option<Labels>,
        }
        let e = serde_json::from_str::<R>(r#"{"labels":{"k":"v","k":"w"}}"#).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        let r: R = serde_json::from_str(r#"{"labels":{"k":"v"}}"#).unwrap();
        assert_eq!(r.labels, Some(labels(&[("k", "v")])));
        assert!(serde_json::from_str::<R>(r#"{"labels":null}"#)
            .unwrap()
            .labels
            .is_none());
        assert!(serde_json::from_str::<R>("{}").unwrap().labels.is_none());
    }

    #[test]
    fn rates_out_of_range_are_refused() {
        assert!(check_rate("max_rate", None).is_ok());
        assert!(check_rate("max_rate", Some(1)).is_ok());
        assert!(check_rate("max_rate", Some(i64::MAX as u64)).is_ok());
        assert!(check_rate("max_rate", Some(0)).is_err());
        let e = check_rate("max_rate", Some(u64::MAX)).unwrap_err();
        assert!(e.message.contains("out of range"), "{}", e.message);
    }
}

/// Transfer windows (`mon-fri 01:00 4h`), at most 32, in their canonical forms.
pub(crate) fn check_windows(field: &str, windows: &[String]) -> ApiResult<Vec<String>> {
    if windows.len() > 32 {
        return Err(ApiError::bad_request(format!(
            "{field}: at most 32 windows, got {}",
            windows.len()
        )));
    }
    windows
        .iter()
        .map(|w| {
            crate::schedule::Window::parse(w)
                .map(|w| w.to_string())
                .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
        })
        .collect()
}

/// An IANA time zone name.
pub(crate) fn check_time_zone(field: &str, name: &str) -> ApiResult<()> {
    crate::schedule::time_zone(name)
        .map(drop)
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

/// An RFC 3339 time with an offset (`2026-12-05T01:00:00+08:00`), as unix seconds.
pub(crate) fn check_time(field: &str, s: &str) -> ApiResult<i64> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{field}: {s:?} is not an RFC 3339 time with an offset, e.g. 2026-12-05T01:00:00+08:00 ({e})"
            ))
        })
}
