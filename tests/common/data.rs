//! Test data (deterministic random bytes, SHA-256), file helpers, and reading Prometheus text
//! and push JSON.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{run_cmd, TestEnv, CMD_TIMEOUT};

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// SplitMix64: a fast, seeded, deterministic byte source for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// `len` deterministic random bytes for `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Write `len` deterministic random bytes for `seed` to `path`.
pub fn write_random(path: &Path, seed: u64, len: usize) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("creating parent dir");
    }
    std::fs::write(path, random_bytes(seed, len)).expect("writing test data");
}

/// SHA-256 of a file as lowercase hex, computed by the real `sha256sum`.
pub fn sha256sum(env: &TestEnv, path: &Path) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let o = run_cmd(env, cmd, CMD_TIMEOUT);
    assert!(o.ok(), "sha256sum {} failed: {}", path.display(), o.stderr);
    o.stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// SHA-256 of bytes in memory, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// `../shared/tools/make-testdata.py` relative to the repository root, if it exists.
pub fn make_testdata_tool() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/make-testdata.py");
    p.is_file().then_some(p)
}

/// Read a whole file (panics with the path).
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Open a file (panics with the path).
pub fn open(path: &Path) -> File {
    File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------------

/// Sum of every sample of `metric` whose labels contain all of `labels` (`k="v"` pairs).
/// None when the metric has no matching sample.
pub fn prom_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.split_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // a longer metric name with this prefix
        };
        if !labels
            .iter()
            .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let Some(val) = value
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<f64>().ok())
        else {
            continue;
        };
        *total.get_or_insert(0.0) += val;
    }
    total
}

/// One site's entry in a Push JSON.
pub fn push_site<'a>(push: &'a Value, site: &str) -> &'a Value {
    push["sites"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["site"] == site))
        .unwrap_or_else(|| panic!("push has no entry for site {site}: {push:#}"))
}

/// A u64 field of a JSON object (panics naming it).
pub fn u64_field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("field {key:?} missing or not a number in {v}"))
}
