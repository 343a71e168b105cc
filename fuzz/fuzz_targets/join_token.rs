//! Join tokens as an operator pastes them into `sitecast edge --join` and as the origin reads
//! them from `Enroll`: parsing never panics, and what parses prints back to a token that
//! parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_runtime::tls::JoinToken;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = s.parse::<JoinToken>() else {
        return;
    };
    let text = t.to_string();
    assert!(text.starts_with("scj1."));
    assert_eq!(text.parse::<JoinToken>().as_ref(), Ok(&t));
    assert!(!t.secret.is_empty() && !t.secret.contains('.'));
    // The Debug form never shows the secret.
    let dbg = format!("{t:?}");
    assert!(!dbg.contains(&format!(".{}", t.secret)));
});
