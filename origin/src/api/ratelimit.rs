//! Rate limits of the REST API listener (`[[rate_limits]]`), decided before authentication.
//!
//! Contract:
//! - Rules are tried in the order of the config; the **first** whose conditions all hold
//!   decides the request (as Kubernetes' API Priority and Fairness takes the first matching
//!   flow schema), the others are not consulted. A request no rule matches is not limited.
//!   Conditions: `user_agent` (a regex on the `User-Agent` header, absent = the empty string),
//!   `methods` (`GET` covers `HEAD`), `path` (see [`PathPattern`]).
//! - Each rule is a token bucket of `burst` tokens refilled at `rate` (GCRA, from `governor`):
//!   one bucket per client IP address (`per = "client"`) or one for all the rule's requests
//!   (`per = "rule"`). A request that finds a token goes on; one that finds none gets 429
//!   `too_many_requests` with `Retry-After`: the seconds, rounded up, until a token is there.
//! - The layer runs before every route and before the bearer-token check, so a refused
//!   request costs no database access: it is neither authenticated nor written to the audit
//!   log. `/healthz` and `/metrics` are limited like any path when a rule matches them.
//! - Each rule counts the requests it matched, allowed and refused, for `/metrics`
//!   (`sitecast_origin_rate_limit_requests_total{rule,result}`).
//! - Per-client buckets are forgotten once full again (indistinguishable from a new one);
//!   the sweep runs whenever a rule's table has doubled since the last one, so memory follows
//!   the clients seen within about `burst / rate`.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use regex::bytes::Regex;
use sitecast_runtime::prom::Prom;

use super::{ApiError, AppState};
use crate::config::{RateLimitPer, RateLimitRule};
use crate::error::{Error, Result};

/// Largest `N` of a rate `N/unit`.
const MAX_RATE_COUNT: u32 = 1_000_000;
/// Size of a per-client table below which it is never swept.
const MIN_SWEEP: usize = 1024;
const METRIC: &str = "sitecast_origin_rate_limit_requests_total";
const METRIC_HELP: &str = "REST API requests a rate-limit rule matched, by whether its bucket allowed them or refused them with 429.";

/// The compiled rules of a running origin, with their buckets and counters.
pub(crate) struct RateLimits<C: Clock = MonotonicClock> {
    rules: Vec<Rule<C>>,
}

/// A request refused by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The rule's name.
    pub(crate) rule: String,
    /// The rule's limit as configured (`1/s, burst 5, per client`).
    pub(crate) limit: String,
    /// Whole seconds, rounded up (at least 1), until the bucket holds a token again.
    pub(crate) retry_after: u64,
}

struct Rule<C: Clock> {
    name: String,
    user_agent: Option<Regex>,
    methods: Vec<Method>,
    path: Option<PathPattern>,
    per: RateLimitPer,
    limit: String,
    buckets: Buckets<C>,
    /// Table size at which the next sweep of full buckets runs.
    next_sweep: AtomicUsize,
    allowed: AtomicU64,
    refused: AtomicU64,
}

type Buckets<C> = RateLimiter<
    Option<IpAddr>,
    DashMapStateStore<Option<IpAddr>>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// A rule's conditions and quota, checked but without buckets.
struct Parsed {
    user_agent: Option<Regex>,
    methods: Vec<Method>,
    path: Option<PathPattern>,
    quota: Quota,
    limit: String,
}

/// Check one configured rule; the message names the offending field.
///
/// # Errors
/// What is wrong with the rule.
pub(crate) fn check_rule(r: &RateLimitRule) -> std::result::Result<(), String> {
    parse_rule(r).map(drop)
}

fn parse_rule(r: &RateLimitRule) -> std::result::Result<Parsed, String> {
    let name_ok = (1..=63).contains(&r.name.len())
        && r.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err("name must be 1-63 letters, digits, '-', '_' or '.'".into());
    }
    let user_agent = r
        .user_agent
        .as_deref()
        .map(|re| {
            Regex::new(re).map_err(|e| format!("user_agent {re:?} is not a valid regex: {e}"))
        })
        .transpose()?;
    let mut methods = Vec::new();
    for m in &r.methods {
        let up = m.to_ascii_uppercase();
        let method = Method::from_bytes(up.as_bytes())
            .ok()
            .filter(|_| !up.is_empty() && up.bytes().all(|b| b.is_ascii_alphabetic()))
            .ok_or_else(|| format!("methods: {m:?} is not an HTTP method"))?;
        methods.push(method);
    }
    let path = r
        .path
        .as_deref()
        .map(|p| PathPattern::parse(p).map_err(|e| format!("path {p:?}: {e}")))
        .transpose()?;
    let (count, unit) = parse_rate(&r.rate).map_err(|e| format!("rate {:?}: {e}", r.rate))?;
    let burst = NonZeroU32::new(r.burst).ok_or("burst must be at least 1")?;
    let quota = Quota::with_period(unit / count.get())
        .ok_or("rate is too fast")?
        .allow_burst(burst);
    let per = match r.per {
        RateLimitPer::Client => "client",
        RateLimitPer::Rule => "rule",
    };
    Ok(Parsed {
        user_agent,
        methods,
        path,
        quota,
        limit: format!("{}, burst {}, per {per}", r.rate, r.burst),
    })
}

/// `N/s`, `N/min` or `N/h`: N tokens per unit.
fn parse_rate(s: &str) -> std::result::Result<(NonZeroU32, Duration), String> {
    const SYNTAX: &str = "write N/s, N/min or N/h, e.g. \"10/s\" or \"30/min\"";
    let (n, unit) = s.split_once('/').ok_or(SYNTAX)?;
    let unit = match unit.trim() {
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(SYNTAX.into()),
    };
    let n: u32 = n.trim().parse().map_err(|_| SYNTAX.to_owned())?;
    if n == 0 {
        return Err("rate must be more than 0 (leave the rule out to not limit)".into());
    }
    if n > MAX_RATE_COUNT {
        return Err(format!("at most {MAX_RATE_COUNT} per unit"));
    }
    Ok((NonZeroU32::new(n).ok_or(SYNTAX)?, unit))
}

impl RateLimits {
    /// Compile the configured rules (checked again here; `OriginConfig::validate` checked
    /// them first).
    ///
    /// # Errors
    /// [`Error::Config`] naming the rule and the field.
    pub(crate) fn new(rules: &[RateLimitRule]) -> Result<Self> {
        Self::with_clock(rules, &MonotonicClock)
    }
}

impl<C: Clock> RateLimits<C> {
    fn with_clock(rules: &[RateLimitRule], clock: &C) -> Result<Self>
    where
        C: Clone,
    {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = parse_rule(r).map_err(|e| {
                    Error::Config(format!("rate_limits[{i}] (rule {:?}): {e}", r.name))
                })?;
                Ok(Rule {
                    name: r.name.clone(),
                    user_agent: p.user_agent,
                    methods: p.methods,
                    path: p.path,
                    per: r.per,
                    limit: p.limit,
                    buckets: RateLimiter::dashmap_with_clock(p.quota, clock.clone()),
                    next_sweep: AtomicUsize::new(MIN_SWEEP),
                    allowed: AtomicU64::new(0),
                    refused: AtomicU64::new(0),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { rules })
    }

    /// Decide a request: `Ok` when no rule matches or the first matching one has a token.
    ///
    /// # Errors
    /// The [`Refusal`] of the first matching rule.
    pub(crate) fn check(
        &self,
        method: &Method,
        path: &str,
        user_agent: &[u8],
        client: Option<IpAddr>,
    ) -> std::result::Result<(), Refusal> {
        let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.matches(method, path, user_agent))
        else {
            return Ok(());
        };
        let key = match rule.per {
            RateLimitPer::Client => client,
            RateLimitPer::Rule => None,
        };
        match rule.buckets.check_key(&key) {
            Ok(()) => {
                rule.allowed.fetch_add(1, Ordering::Relaxed);
                rule.sweep();
                Ok(())
            }
            Err(not_until) => {
                rule.refused.fetch_add(1, Ordering::Relaxed);
                let wait = not_until.wait_time_from(rule.buckets.clock().now());
                Err(Refusal {
                    rule: rule.name.clone(),
                    limit: rule.limit.clone(),
                    retry_after: ceil_secs(wait),
                })
            }
        }
    }

    /// Add every rule's counters (both results, zeros included) to `p`.
    pub(crate) fn write_metrics(&self, p: &mut Prom) {
        for r in &self.rules {
            for (result, n) in [("allowed", &r.allowed), ("refused", &r.refused)] {
                p.counter(
                    METRIC,
                    METRIC_HELP,
                    &[("rule", &r.name), ("result", result)],
                    n.load(Ordering::Relaxed),
                );
            }
        }
    }
}

impl<C: Clock> Rule<C> {
    fn matches(&self, method: &Method, path: &str, user_agent: &[u8]) -> bool {
        let method_ok = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m == method || (*m == Method::GET && *method == Method::HEAD));
        method_ok
            && self.path.as_ref().is_none_or(|p| p.matches(path))
            && self
                .user_agent
                .as_ref()
                .is_none_or(|re| re.is_match(user_agent))
    }

    /// Forget full buckets once the table has doubled since the last sweep.
    fn sweep(&self) {
        if self.per == RateLimitPer::Rule {
            return;
        }
        if self.buckets.len() >= self.next_sweep.load(Ordering::Relaxed) {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
            let next = (self.buckets.len() * 2).max(MIN_SWEEP);
            self.next_sweep.store(next, Ordering::Relaxed);
        }
    }
}

/// Whole seconds, rounded up, at least 1 (a refusal always has something to wait for).
fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// A `path` condition: literal segments, `*` for any one segment, a final `**` for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathPattern {
    segments: Vec<Segment>,
    /// Ends in `**`: the segments after those given, none or more, match.
    rest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
}

impl PathPattern {
    fn parse(p: &str) -> std::result::Result<Self, String> {
        let body = p.strip_prefix('/').ok_or("must start with '/'")?;
        let mut parts: Vec<&str> = body.split('/').collect();
        let rest = parts.last() == Some(&"**");
        if rest {
            parts.pop();
        }
        if parts == [""] && !rest {
            // `/` itself.
            return Ok(Self {
                segments: vec![Segment::Literal(String::new())],
                rest,
            });
        }
        let segments = parts
            .into_iter()
            .map(|s| match s {
                "" => Err("an empty segment ('//' or a trailing '/')".to_owned()),
                "*" => Ok(Segment::Any),
                "**" => Err("'**' may only end the pattern".to_owned()),
                s if s.contains('*') => Err(format!(
                    "{s:?}: '*' stands for a whole segment ('/*/'), not part of one"
                )),
                s => Ok(Segment::Literal(s.to_owned())),
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self { segments, rest })
    }

    fn matches(&self, path: &str) -> bool {
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = body.split('/');
        for s in &self.segments {
            match (s, parts.next()) {
                (_, None) => return false,
                (Segment::Any, Some(_)) => {}
                (Segment::Literal(l), Some(p)) if l == p => {}
                (Segment::Literal(_), Some(_)) => return false,
            }
        }
        self.rest || parts.next().is_none()
    }
}

/// The middleware: the first matching rule's bucket decides, before routing and auth.
pub(crate) async fn limit(State(core): State<AppState>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map_or(&b""[..], HeaderValue::as_bytes);
    match core
        .rate_limits
        .check(req.method(), req.uri().path(), user_agent, client)
    {
        Ok(()) => next.run(req).await,
        Err(r) => {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "rate limit {:?} ({}) exceeded; retry after {} s",
                    r.rule, r.limit, r.retry_after
                ),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(r.retry_after));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn rule(name: &str, rate: &str, burst: u32) -> RateLimitRule {
        RateLimitRule {
            name: name.into(),
            user_agent: None,
            methods: Vec::new(),
            path: None,
            rate: rate.into(),
            burst,
            per: RateLimitPer::Client,
        }
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    fn limits(rules: &[RateLimitRule]) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimits::with_clock(rules, &clock).unwrap(), clock)
    }

    #[test]
    fn path_patterns_match_segment_by_segment() {
        let m = |pat: &str, path: &str| PathPattern::parse(pat).unwrap().matches(path);
        assert!(m("/api/v1/pushes", "/api/v1/pushes"));
        assert!(!m("/api/v1/pushes", "/api/v1/pushes/1"));
        assert!(!m("/api/v1/pushes", "/api/v1/pushesX"));
        assert!(!m("/api/v1/pushes", "/api/v1/pushes/"));
        assert!(!m("/api/v1/pushes", "/api/v1"));
        assert!(m("/api/v1/pushes/*/cancel", "/api/v1/pushes/7/cancel"));
        assert!(!m("/api/v1/pushes/*/cancel", "/api/v1/pushes/7/pause"));
        assert!(!m("/api/v1/pushes/*/cancel", "/api/v1/pushes/cancel"));
        assert!(m("/api/v1/artifacts/**", "/api/v1/artifacts"));
        assert!(m("/api/v1/artifacts/**", "/api/v1/artifacts/fw/a/b.bin"));
        assert!(!m("/api/v1/artifacts/**", "/api/v1/artifactsX/a"));
        assert!(m("/**", "/healthz"));
        assert!(m("/", "/"));
        assert!(!m("/", "/healthz"));
        assert!(m("/*", "/metrics"));
        assert!(!m("/*", "/api/v1"));
        for bad in [
            "api/v1",
            "/api//v1",
            "/api/v1/",
            "/a/**/b",
            "/api/push*",
            "",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates_parse_and_bad_rules_name_the_field() {
        assert_eq!(
            parse_rate("10/s").unwrap(),
            (NonZeroU32::new(10).unwrap(), Duration::from_secs(1))
        );
        assert_eq!(parse_rate(" 30 / min").unwrap().1, Duration::from_secs(60));
        assert_eq!(parse_rate("1/h").unwrap().1, Duration::from_secs(3600));
        for bad in ["10", "10/d", "x/s", "-1/s", "1.5/s", "2000000/s"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        let err = |r: RateLimitRule| check_rule(&r).unwrap_err();
        assert!(err(rule("z", "0/s", 1)).contains("rate must be more than 0"));
        assert!(err(rule("z", "1/s", 0)).contains("burst"));
        assert!(err(rule("bad name", "1/s", 1)).contains("name"));
        let mut r = rule("z", "1/s", 1);
        r.user_agent = Some("^python-(requests".into());
        assert!(err(r).contains("user_agent \"^python-(requests\" is not a valid regex"));
        let mut r = rule("z", "1/s", 1);
        r.methods = vec!["P0ST".into()];
        assert!(err(r).contains("methods"));
        let mut r = rule("z", "1/s", 1);
        r.path = Some("api".into());
        assert!(err(r).contains("path"));
        let e = RateLimits::new(&[rule("ok", "1/s", 1), rule("zero", "0/min", 1)])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("rate_limits[1] (rule \"zero\")"), "{e}");
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let mut python = rule("python-pushes", "1/h", 1);
        python.user_agent = Some("^python-requests/".into());
        python.methods = vec!["post".into()];
        python.path = Some("/api/v1/pushes".into());
        let mut reads = rule("reads", "1/h", 1);
        reads.methods = vec!["GET".into()];
        let (l, _) = limits(&[python, reads]);
        let py = b"python-requests/2.31";
        let (post, get) = (Method::POST, Method::GET);
        assert_eq!(l.check(&post, "/api/v1/pushes", py, A), Ok(()));
        let r = l.check(&post, "/api/v1/pushes", py, A).unwrap_err();
        assert_eq!(r.rule, "python-pushes");
        assert_eq!(r.limit, "1/h, burst 1, per client");
        // Other user agents, methods and paths do not match the first rule; the regex is
        // unanchored unless anchored: "my-python-requests/1" does not start with it.
        assert_eq!(l.check(&post, "/api/v1/pushes", b"curl/8.5", A), Ok(()));
        assert_eq!(
            l.check(&post, "/api/v1/pushes", b"my-python-requests/1", A),
            Ok(())
        );
        assert_eq!(l.check(&post, "/api/v1/pushes", b"", A), Ok(()));
        assert_eq!(l.check(&post, "/api/v1/sites", py, A), Ok(()));
        assert_eq!(l.check(&post, "/api/v1/pushes/1/cancel", py, A), Ok(()));
        // GET /api/v1/pushes from python falls through to `reads`: once, then refused there.
        assert_eq!(l.check(&get, "/api/v1/pushes", py, A), Ok(()));
        assert_eq!(
            l.check(&Method::HEAD, "/healthz", b"", A).unwrap_err().rule,
            "reads",
            "GET covers HEAD"
        );
        let mut p = Prom::new();
        l.write_metrics(&mut p);
        let text = p.finish();
        for line in [
            "sitecast_origin_rate_limit_requests_total{rule=\"python-pushes\",result=\"allowed\"} 1",
            "sitecast_origin_rate_limit_requests_total{rule=\"python-pushes\",result=\"refused\"} 1",
            "sitecast_origin_rate_limit_requests_total{rule=\"reads\",result=\"allowed\"} 1",
            "sitecast_origin_rate_limit_requests_total{rule=\"reads\",result=\"refused\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn bucket_refills_at_the_rate_and_retry_after_rounds_up() {
        // 2/s, burst 3: three at once, then one every 500 ms.
        let (l, clock) = limits(&[rule("r", "2/s", 3)]);
        let go = |ip| l.check(&Method::GET, "/x", b"", ip);
        for _ in 0..3 {
            assert_eq!(go(A), Ok(()));
        }
        assert_eq!(go(A).unwrap_err().retry_after, 1, "500 ms rounds up to 1 s");
        clock.advance(Duration::from_millis(499));
        assert!(go(A).is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(go(A), Ok(()));
        assert!(go(A).is_err());
        // Quiet for long enough, the bucket is full again, and no fuller than `burst`.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(go(A), Ok(()));
        }
        assert!(go(A).is_err());
        // 1/min, burst 1: the second request waits the whole minute, then less.
        let (l, clock) = limits(&[rule("slow", "1/min", 1)]);
        let go = || l.check(&Method::GET, "/x", b"", A);
        assert_eq!(go(), Ok(()));
        assert_eq!(go().unwrap_err().retry_after, 60);
        clock.advance(Duration::from_millis(20_500));
        assert_eq!(go().unwrap_err().retry_after, 40, "39.5 s rounds up");
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
        assert_eq!(ceil_secs(Duration::from_nanos(3_000_000_001)), 4);
    }

    #[test]
    fn per_client_buckets_are_separate_and_per_rule_shared() {
        let mut shared = rule("shared", "1/h", 2);
        shared.per = RateLimitPer::Rule;
        shared.path = Some("/healthz".into());
        let (l, _) = limits(&[rule("each", "1/h", 2), shared]);
        let go = |path, ip| l.check(&Method::GET, path, b"", ip);
        // `each` is listed first and has no conditions: it takes everything, per client.
        assert!(go("/x", A).is_ok() && go("/x", A).is_ok() && go("/x", A).is_err());
        assert!(go("/x", B).is_ok() && go("/x", B).is_ok() && go("/x", B).is_err());
        assert!(
            go("/x", None).is_ok(),
            "an unknown address has its own bucket"
        );
        let (l, _) = limits(&[{
            let mut r = rule("shared", "1/h", 2);
            r.per = RateLimitPer::Rule;
            r
        }]);
        let go = |ip| l.check(&Method::GET, "/x", b"", ip);
        assert!(go(A).is_ok() && go(B).is_ok());
        assert!(
            go(A).is_err() && go(B).is_err(),
            "one bucket for every client"
        );
    }

    #[test]
    fn full_per_client_buckets_are_swept_when_the_table_doubles() {
        let (l, clock) = limits(&[rule("r", "10/s", 1)]);
        let ip = |i: u32| Some(IpAddr::V4(std::net::Ipv4Addr::from(i)));
        for i in 0..MIN_SWEEP as u32 - 1 {
            assert!(l.check(&Method::GET, "/", b"", ip(i)).is_ok());
        }
        let r = &l.rules[0];
        assert_eq!(r.buckets.len(), MIN_SWEEP - 1);
        // A second later every one of those buckets is full again: the next new client
        // brings the table to MIN_SWEEP, which sweeps them and keeps the busy one.
        clock.advance(Duration::from_secs(1));
        assert!(l.check(&Method::GET, "/", b"", ip(u32::MAX)).is_ok());
        assert_eq!(r.buckets.len(), 1);
        assert!(l.check(&Method::GET, "/", b"", ip(u32::MAX)).is_err());
        assert_eq!(r.next_sweep.load(Ordering::Relaxed), MIN_SWEEP);
    }
}
