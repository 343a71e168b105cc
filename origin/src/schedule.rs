//! When a push may use a site's link: its start time, and recurring transfer windows in the
//! site's own time zone.
//!
//! A window is written `DAYS HH:MM[:SS] DURATION`, e.g. `mon-fri 01:00 4h`, `sat,sun 22:30
//! 90m`, `* 00:00 24h`: the days of the week it opens on (`*` or `daily` for every day; names,
//! ranges, wrapping ranges such as `fri-mon`), the local time it opens at, and how long it stays
//! open (1 s to 7 days, real time: a 4 h window across a DST change is 4 hours long). A site's
//! windows and a push's windows both apply: the push transfers to the site only while one of
//! each is open (no windows = always open). Local times that do not exist (a DST gap) open at
//! the first instant after the gap; ambiguous ones (a DST fold) at the earlier.

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Longest window: a week (one always-open window is `* 00:00 24h` or `mon 00:00 7days`).
const MAX_DURATION: u32 = 7 * 24 * 3600;

/// One recurring transfer window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Bit 0 = Monday … bit 6 = Sunday.
    days: u8,
    /// Seconds after local midnight.
    start: u32,
    /// Seconds it stays open.
    duration: u32,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(name: &str) -> Option<u32> {
    let n = name.to_ascii_lowercase();
    let n = n.get(..3).filter(|_| {
        // "mon", "monday" and the like; not "monkey".
        let full = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        name.len() == 3 || full.iter().any(|f| f.eq_ignore_ascii_case(name))
    })?;
    DAY_NAMES.iter().position(|d| *d == n).map(|i| i as u32)
}

impl Window {
    /// Parse `DAYS HH:MM[:SS] DURATION`; the error says what is wrong and shows the syntax.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = |what: String| {
            format!("transfer window {s:?}: {what} (expected e.g. \"mon-fri 01:00 4h\")")
        };
        let parts: Vec<&str> = s.split_whitespace().collect();
        let [days, at, dur] = parts[..] else {
            return Err(bad("needs three parts: days, start time, duration".into()));
        };
        let mut mask = 0u8;
        if days == "*" || days.eq_ignore_ascii_case("daily") {
            mask = 0x7f;
        } else {
            for item in days.split(',') {
                let (a, b) = item.split_once('-').unwrap_or((item, item));
                let (Some(a), Some(b)) = (day(a), day(b)) else {
                    return Err(bad(format!("{item:?} is not a day or a range of days")));
                };
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
        let hms: Vec<&str> = at.split(':').collect();
        let num = |p: &str, max: u32| p.parse::<u32>().ok().filter(|v| *v <= max && p.len() == 2);
        let start = match hms[..] {
            [h, m] => num(h, 23).zip(num(m, 59)).map(|(h, m)| h * 3600 + m * 60),
            [h, m, sec] => num(h, 23)
                .zip(num(m, 59))
                .zip(num(sec, 59))
                .map(|((h, m), sec)| h * 3600 + m * 60 + sec),
            _ => None,
        }
        .ok_or_else(|| bad(format!("{at:?} is not a time of day HH:MM or HH:MM:SS")))?;
        let duration = humantime::parse_duration(dur)
            .ok()
            .and_then(|d| u32::try_from(d.as_secs()).ok())
            .filter(|d| (1..=MAX_DURATION).contains(d))
            .ok_or_else(|| bad(format!("{dur:?} is not a duration from 1s to 7days")))?;
        Ok(Self {
            days: mask,
            start,
            duration,
        })
    }

    /// The intervals (unix seconds, end exclusive) this window is open around `now`: every
    /// opening from 8 days before to 8 days after.
    fn intervals(&self, tz: &TimeZone, today: Date) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for offset in -8i64..=8 {
            let Ok(d) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            let wd = d.weekday().to_monday_zero_offset();
            if self.days & (1 << wd) == 0 {
                continue;
            }
            let (h, m, s) = (self.start / 3600, self.start / 60 % 60, self.start % 60);
            let Ok(opens) = d.at(h as i8, m as i8, s as i8, 0).to_zoned(tz.clone()) else {
                continue;
            };
            let opens = opens.timestamp().as_second();
            out.push((opens, opens + i64::from(self.duration)));
        }
        out
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == 0x7f {
            f.write_str("*")?;
        } else {
            // Runs of consecutive days as ranges, Monday first.
            let mut first = true;
            let mut d = 0;
            while d < 7 {
                if self.days & (1 << d) == 0 {
                    d += 1;
                    continue;
                }
                let a = d;
                while d + 1 < 7 && self.days & (1 << (d + 1)) != 0 {
                    d += 1;
                }
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                if a == d {
                    f.write_str(DAY_NAMES[a])?;
                } else {
                    write!(f, "{}-{}", DAY_NAMES[a], DAY_NAMES[d])?;
                }
                d += 1;
            }
        }
        let (h, m, s) = (self.start / 3600, self.start / 60 % 60, self.start % 60);
        write!(f, " {h:02}:{m:02}")?;
        if s != 0 {
            write!(f, ":{s:02}")?;
        }
        let dur = humantime::format_duration(std::time::Duration::from_secs(self.duration.into()));
        write!(f, " {}", dur.to_string().replace(' ', ""))
    }
}

/// A site's time zone by IANA name (`Asia/Shanghai`, `UTC`); the error names it.
pub(crate) fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| {
        format!("{name:?} is not an IANA time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)")
    })
}

/// Whether `now` (unix seconds) lies in one of `windows` (always, when there are none), and
/// the next instant after `now` at which that may change (None: never).
pub(crate) fn open(windows: &[Window], tz: &TimeZone, now: i64) -> (bool, Option<i64>) {
    if windows.is_empty() {
        return (true, None);
    }
    let Ok(ts) = Timestamp::from_second(now) else {
        return (true, None);
    };
    let today = ts.to_zoned(tz.clone()).date();
    let mut is_open = false;
    let mut next: Option<i64> = None;
    for w in windows {
        for (a, b) in w.intervals(tz, today) {
            is_open |= a <= now && now < b;
            for t in [a, b] {
                if t > now && next.is_none_or(|n| t < n) {
                    next = Some(t);
                }
            }
        }
    }
    (is_open, next)
}

/// Why a push is not transferring to a site now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Before the push's start time.
    Scheduled,
    /// Outside the push's or the site's transfer windows.
    WaitingWindow,
    /// A push of higher priority is transferring to the site (strict priority).
    WaitingPriority,
    /// An admin paused the push.
    Paused,
}

impl Held {
    /// The push-site state it shows as.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Held::Scheduled => "scheduled",
            Held::WaitingWindow => "waiting_window",
            Held::WaitingPriority => "waiting_priority",
            Held::Paused => "paused",
        }
    }
}

/// Whether a push may transfer to a site at `now`: None when it may, else why not; and when
/// that may next change (None: never, unless the push or site is edited).
pub(crate) fn gate(
    now: i64,
    start_at: Option<i64>,
    push_windows: &[Window],
    site_windows: &[Window],
    tz: &TimeZone,
) -> (Option<Held>, Option<i64>) {
    if let Some(at) = start_at.filter(|at| now < *at) {
        return (Some(Held::Scheduled), Some(at));
    }
    let (p, pn) = open(push_windows, tz, now);
    let (s, sn) = open(site_windows, tz, now);
    let next = match (pn, sn) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    ((!(p && s)).then_some(Held::WaitingWindow), next)
}

/// Windows stored as their text forms (a JSON array of strings); a row that no longer parses
/// is reported by the caller as a corrupt record.
pub(crate) fn parse_all(list: &[String]) -> Result<Vec<Window>, String> {
    list.iter().map(|s| Window::parse(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn windows_parse_print_and_refuse_with_the_syntax() {
        for (text, canonical) in [
            ("mon-fri 01:00 4h", "mon-fri 01:00 4h"),
            ("Sat,SUN 22:30 90m", "sat-sun 22:30 1h30m"),
            ("daily 00:00 24h", "* 00:00 1day"),
            ("fri-mon 23:00:30 2h", "mon,fri-sun 23:00:30 2h"),
            ("wednesday 12:00 30s", "wed 12:00 30s"),
        ] {
            let w = Window::parse(text).unwrap();
            assert_eq!(w.to_string(), canonical, "{text}");
            assert_eq!(Window::parse(canonical).unwrap(), w, "{canonical}");
        }
        for bad in [
            "",
            "mon-fri 01:00",
            "funday 01:00 4h",
            "monkey 01:00 4h",
            "mon 24:00 1h",
            "mon 1:00 1h",
            "mon 01:60 1h",
            "mon 01:00 0s",
            "mon 01:00 8days",
            "mon 01:00 soon",
        ] {
            let e = Window::parse(bad).unwrap_err();
            assert!(e.contains("mon-fri 01:00 4h"), "{bad}: {e}");
        }
    }

    #[test]
    fn open_follows_the_site_clock_across_days_and_dst() {
        let sh = time_zone("Asia/Shanghai").unwrap();
        let w = [Window::parse("mon-fri 01:00 4h").unwrap()];
        // Tuesday 2026-12-01 02:00 in Shanghai is Monday 18:00 UTC.
        assert_eq!(
            open(&w, &sh, ts("2026-11-30T18:00:00Z")),
            (true, Some(ts("2026-11-30T21:00:00Z")))
        );
        // Friday 2026-12-04 06:00 local: closed until Monday 01:00 local.
        assert_eq!(
            open(&w, &sh, ts("2026-12-03T22:00:00Z")),
            (false, Some(ts("2026-12-06T17:00:00Z")))
        );
        // A window past midnight stays open into the next day.
        let late = [Window::parse("sun 23:00 3h").unwrap()];
        let utc = TimeZone::UTC;
        assert_eq!(
            open(&late, &utc, ts("2026-12-07T01:00:00Z")),
            (true, Some(ts("2026-12-07T02:00:00Z")))
        );
        // Berlin leaves DST on 2026-10-25: 01:00 local is 23:00 UTC before, 00:00 UTC after.
        let be = time_zone("Europe/Berlin").unwrap();
        let d = [Window::parse("* 01:00 1h").unwrap()];
        assert!(open(&d, &be, ts("2026-10-24T23:30:00Z")).0);
        assert!(open(&d, &be, ts("2026-10-26T00:30:00Z")).0);
        assert!(!open(&d, &be, ts("2026-10-25T23:30:00Z")).0);
        assert_eq!(open(&[], &be, 0), (true, None));
        assert!(time_zone("Mars/Olympus").unwrap_err().contains("IANA"));
    }

    #[test]
    fn gate_needs_the_start_time_and_both_sets_of_windows() {
        let utc = TimeZone::UTC;
        let nights = [Window::parse("* 01:00 4h").unwrap()];
        let early = [Window::parse("* 00:00 2h").unwrap()];
        let t = ts("2026-12-01T01:30:00Z");
        assert_eq!(
            gate(t, Some(t + 60), &[], &[], &utc),
            (Some(Held::Scheduled), Some(t + 60))
        );
        assert_eq!(gate(t, Some(t), &nights, &early, &utc).0, None);
        // 02:30: the push's window is open, the site's closed since 02:00.
        let t = ts("2026-12-01T02:30:00Z");
        assert_eq!(
            gate(t, None, &nights, &early, &utc),
            (Some(Held::WaitingWindow), Some(ts("2026-12-01T05:00:00Z")))
        );
    }
}
