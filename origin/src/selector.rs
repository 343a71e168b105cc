//! Label expressions that choose sites for a push, in the Kubernetes label-selector syntax an
//! operator already knows: requirements separated by commas, all of which must hold.
//!
//! | requirement | holds when |
//! |---|---|
//! | `k=v`, `k==v` | the site has label `k` with value `v` |
//! | `k!=v` | it has no label `k`, or one with another value |
//! | `k in (a,b)` | its `k` is one of the values |
//! | `k notin (a,b)` | it has no `k`, or one not among the values |
//! | `k` | it has a label `k` |
//! | `!k` | it has no label `k` |
//!
//! e.g. `province=gansu,tier!=hub`, `region in (north,west)`.

use std::collections::BTreeSet;

use crate::db::Labels;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    Absent(String),
}

/// A parsed label expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector(Vec<Req>);

/// A key or value: 1–63 of letters, digits, `-`, `_`, `.`, `/`.
fn word(s: &str) -> Option<String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    ok.then(|| s.to_owned())
}

/// Split at commas outside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced or nested parentheses".into());
        }
    }
    if depth != 0 {
        return Err("a '(' is not closed".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

fn set(s: &str) -> Option<BTreeSet<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(word).collect()
}

fn requirement(r: &str) -> Result<Req, String> {
    let r = r.trim();
    let bad = || format!("{r:?} is not a requirement");
    for (op, is_in) in [(" notin ", false), (" in ", true)] {
        if let Some((k, vs)) = r.split_once(op) {
            let k = word(k).ok_or_else(bad)?;
            let vs =
                set(vs).ok_or_else(|| format!("{r:?}: values go in parentheses, e.g. (a,b)"))?;
            return Ok(if is_in {
                Req::In(k, vs)
            } else {
                Req::NotIn(k, vs)
            });
        }
    }
    if let Some((k, v)) = r.split_once("!=") {
        return Ok(Req::Ne(word(k).ok_or_else(bad)?, word(v).ok_or_else(bad)?));
    }
    if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
        return Ok(Req::Eq(word(k).ok_or_else(bad)?, word(v).ok_or_else(bad)?));
    }
    if let Some(k) = r.strip_prefix('!') {
        return Ok(Req::Absent(word(k).ok_or_else(bad)?));
    }
    Ok(Req::Exists(word(r).ok_or_else(bad)?))
}

impl Selector {
    /// Parse an expression; the error names the requirement that is wrong and shows the syntax.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let e = |why: String| {
            format!(
                "label selector {s:?}: {why} (e.g. \"province=gansu,tier!=hub\", \"region in (north,west)\")"
            )
        };
        if s.trim().is_empty() {
            return Err(e("it is empty".into()));
        }
        let reqs = split_top(s)
            .map_err(e)?
            .into_iter()
            .map(requirement)
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok(Self(reqs))
    }

    /// Whether a site with `labels` is chosen.
    pub(crate) fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::Ne(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Req::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
            Req::Exists(k) => labels.contains_key(k),
            Req::Absent(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn expressions_choose_sites_as_kubernetes_selectors_do() {
        let hub = labels(&[("province", "gansu"), ("tier", "hub"), ("region", "north")]);
        let farm = labels(&[("province", "gansu"), ("tier", "farm"), ("region", "west")]);
        let other = labels(&[("province", "hebei")]);
        for (expr, want) in [
            ("province=gansu,tier!=hub", [false, true, false]),
            ("province == gansu", [true, true, false]),
            ("region in (north, west)", [true, true, false]),
            ("region notin (west),province", [true, false, true]),
            ("!tier", [false, false, true]),
            ("tier", [true, true, false]),
            ("tier!=hub", [false, true, true]),
        ] {
            let s = Selector::parse(expr).unwrap();
            let got = [&hub, &farm, &other].map(|l| s.matches(l));
            assert_eq!(got, want, "{expr}");
        }
    }

    #[test]
    fn bad_expressions_are_refused_with_the_syntax() {
        for bad in [
            "",
            "a=",
            "=b",
            "a in north",
            "a in (north",
            "a in ((b))",
            "a=b,,c=d",
            "a b",
            "a=b c",
        ] {
            let e = Selector::parse(bad).unwrap_err();
            assert!(e.contains("province=gansu,tier!=hub"), "{bad}: {e}");
        }
    }
}
