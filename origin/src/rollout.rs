//! How a push reaches its sites over time: all at once (the default), in waves, or rolling.
//!
//! **Waves** split the push's sites (in name order) into groups of a count or a percentage of
//! all its sites each (`["5", "20%"]`); the sites the listed waves leave over form one last
//! wave. The first wave starts when the push is created; each next one when the current wave
//! has `success` of its sites complete (default 100 %), or, with `approval`, once an admin
//! approves it (`POST /pushes/{id}/approve`; an approval may also release a wave early).
//!
//! **Rolling** keeps at most K sites (a count or a percentage) transferring at once: the next
//! site starts as soon as any finishes (completes or fails), so one slow or broken site never
//! stalls the others, and K bounds the origin's egress for the push. Sites with a connected
//! node go first, so a site that cannot be reached waits at the end of the queue instead of
//! holding a slot from the start.
//!
//! Both may have an error threshold, `max_failures`: when more sites have failed than that
//! (a count, or a percentage of all the push's sites), the rollout **halts**: no further site
//! starts (the ones already started go on), until an admin approves, which accepts the
//! failures seen so far and continues (in waves, with the next wave). A site that has not started has the push in neither
//! its desired state nor its holds: nothing of it reaches the site, not even content the site
//! already holds under another path.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most sites a count may name.
const MAX_COUNT: u32 = 1_000_000;

/// A number of sites: a count, or a percentage of the push's sites (rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Amount {
    /// This many sites.
    Sites(u32),
    /// This percentage (0..=100) of the push's sites, rounded up.
    Percent(u32),
}

impl Amount {
    /// Parse `5` or `20%`; the error shows the syntax.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = |what: &str| {
            format!(
                "{s:?}: {what} (expected a count such as \"5\" or a percentage such as \"20%\")"
            )
        };
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: u32 = p
                .trim()
                .parse()
                .map_err(|_| bad("not a whole percentage"))?;
            if p > 100 {
                return Err(bad("more than 100%"));
            }
            return Ok(Self::Percent(p));
        }
        let n: u32 = t.parse().map_err(|_| bad("not a whole number"))?;
        if n > MAX_COUNT {
            return Err(bad(&format!("more than {MAX_COUNT} sites")));
        }
        Ok(Self::Sites(n))
    }

    /// How many of `total` sites this is: a count capped at `total`, a percentage rounded up.
    pub(crate) fn of(self, total: usize) -> usize {
        match self {
            Self::Sites(n) => (n as usize).min(total),
            Self::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }

    /// Whether it is 0 sites (or 0 %).
    pub(crate) fn is_zero(self) -> bool {
        matches!(self, Self::Sites(0) | Self::Percent(0))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sites(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\s*[0-9]+\s*%?\s*$"))
            .description(Some(
                "A count of sites (\"5\"; a JSON number is taken too) or a percentage of the push's sites, rounded up (\"20%\")",
            ))
            .examples(["20%"])
            .into()
    }
}

impl utoipa::ToSchema for Amount {}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// A string (`"5"`, `"20%"`) or a JSON number (`5`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let s = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn hundred_percent() -> Amount {
    Amount::Percent(100)
}

fn is_hundred_percent(a: &Amount) -> bool {
    *a == Amount::Percent(100)
}

/// A push's rollout policy, as the API takes it and the database keeps it (JSON). Amounts are
/// a count of sites (`"5"` or `5`) or a percentage (`"20%"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"waves": ["5", "20%"], "success": "95%", "max_failures": 2}))]
pub(crate) struct Rollout {
    /// Wave sizes; the sites left over form a last wave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) waves: Vec<Amount>,
    /// At most this many sites transferring at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rolling: Option<Amount>,
    /// Of the current wave, how many must be complete before the next starts by itself.
    #[serde(
        default = "hundred_percent",
        skip_serializing_if = "is_hundred_percent"
    )]
    pub(crate) success: Amount,
    /// Each next wave waits for an admin's approval.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) approval: bool,
    /// Halt when more sites than this have failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_failures: Option<Amount>,
}

impl Rollout {
    /// Check the combination; the error names the offending field.
    pub(crate) fn check(&self) -> Result<(), String> {
        match (self.waves.is_empty(), self.rolling) {
            (false, Some(_)) => {
                return Err("rollout: waves and rolling exclude each other".into());
            }
            (true, None) => {
                return Err("rollout: needs waves or rolling (leave rollout out to push to every site at once)".into());
            }
            (true, Some(k)) if k.is_zero() => {
                return Err("rollout.rolling must be at least 1 site or 1%".into());
            }
            (true, Some(_)) if self.approval || !is_hundred_percent(&self.success) => {
                return Err(
                    "rollout.approval and rollout.success apply to waves, not rolling".into(),
                );
            }
            _ => {}
        }
        if let Some(i) = self.waves.iter().position(|w| w.is_zero()) {
            return Err(format!("rollout.waves[{i}] must be at least 1 site or 1%"));
        }
        if self.waves.len() > 100 {
            return Err("rollout.waves: at most 100 waves".into());
        }
        if self.success.is_zero() {
            return Err("rollout.success must be at least 1 site or 1%".into());
        }
        Ok(())
    }

    /// `waves` or `rolling`.
    pub(crate) fn mode(&self) -> &'static str {
        if self.rolling.is_some() {
            "rolling"
        } else {
            "waves"
        }
    }
}

/// The wave (1-based) of each of `total` sites in name order: each listed wave takes its
/// share of `total` (at least one site while any are left), the rest form one last wave.
pub(crate) fn assign_waves(waves: &[Amount], total: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(total);
    let mut wave = 0u32;
    for w in waves {
        if out.len() == total {
            break;
        }
        wave += 1;
        let n = w.of(total).max(1).min(total - out.len());
        out.extend(std::iter::repeat_n(wave, n));
    }
    if out.len() < total {
        wave += 1;
        out.resize(total, wave);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_and_scale() {
        assert_eq!(Amount::parse("5"), Ok(Amount::Sites(5)));
        assert_eq!(Amount::parse(" 20% "), Ok(Amount::Percent(20)));
        for bad in ["", "-1", "1.5", "101%", "x%", "5 sites", "2000000"] {
            let e = Amount::parse(bad).unwrap_err();
            assert!(e.contains("expected a count"), "{bad}: {e}");
        }
        assert_eq!(Amount::Sites(5).of(3), 3);
        assert_eq!(Amount::Percent(10).of(6), 1, "rounded up");
        assert_eq!(Amount::Percent(95).of(5), 5);
        assert_eq!(Amount::Percent(50).of(5), 3);
        assert_eq!(Amount::Percent(0).of(5), 0);
        assert_eq!(Amount::Percent(100).of(0), 0);
        let r: Rollout =
            serde_json::from_str(r#"{"waves": [5, "20%"], "max_failures": 2}"#).unwrap();
        assert_eq!(r.waves, vec![Amount::Sites(5), Amount::Percent(20)]);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"waves":["5","20%"],"max_failures":"2"}"#
        );
    }

    #[test]
    fn waves_split_sites_in_order_and_the_rest_form_the_last() {
        let w = |s: &[&str], n| {
            let a: Vec<Amount> = s.iter().map(|x| Amount::parse(x).unwrap()).collect();
            assign_waves(&a, n)
        };
        assert_eq!(w(&["2"], 5), vec![1, 1, 2, 2, 2]);
        assert_eq!(w(&["2", "2"], 5), vec![1, 1, 2, 2, 3]);
        assert_eq!(w(&["2", "2"], 4), vec![1, 1, 2, 2], "no empty last wave");
        assert_eq!(w(&["10%", "50%"], 10), vec![1, 2, 2, 2, 2, 2, 3, 3, 3, 3]);
        assert_eq!(
            w(&["1%"], 3),
            vec![1, 2, 2],
            "a wave takes at least one site"
        );
        assert_eq!(
            w(&["5", "5"], 3),
            vec![1, 1, 1],
            "waves past the sites are empty"
        );
        assert_eq!(w(&["100%"], 3), vec![1, 1, 1]);
        assert_eq!(w(&["2"], 0), Vec::<u32>::new());
    }

    #[test]
    fn policies_are_checked_naming_the_field() {
        let check = |j: &str| serde_json::from_str::<Rollout>(j).unwrap().check();
        assert_eq!(
            check(r#"{"waves": ["1"], "success": "95%", "approval": true}"#),
            Ok(())
        );
        assert_eq!(check(r#"{"rolling": "2", "max_failures": "10%"}"#), Ok(()));
        for (j, want) in [
            (r#"{"waves": ["1"], "rolling": 2}"#, "exclude each other"),
            (r#"{}"#, "needs waves or rolling"),
            (r#"{"rolling": 0}"#, "rollout.rolling must be at least 1"),
            (r#"{"rolling": 2, "approval": true}"#, "apply to waves"),
            (r#"{"waves": ["1", "0%"]}"#, "rollout.waves[1]"),
            (r#"{"waves": ["1"], "success": 0}"#, "rollout.success"),
        ] {
            let e = check(j).unwrap_err();
            assert!(e.contains(want), "{j}: {e}");
        }
        assert!(serde_json::from_str::<Rollout>(r#"{"waves": ["1"], "speed": 1}"#).is_err());
    }
}
