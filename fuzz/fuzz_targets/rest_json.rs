//! REST JSON bodies at the origin (`POST /users`, `/users/{name}/keys`, `/grants`, `/tokens`,
//! `/sites`, `/pushes`, `/registry-grants`, `/images/import`, `PUT /sites/{name}/https-names`).
//! Input: one byte choosing the request (`'0'` + its index in `BodyKind::ALL`), then the body.
//!
//! Each body is deserialized exactly as its handler does and goes through every check the
//! handler makes before the database or the network: never a panic, and an accepted body is
//! still accepted after a re-encoding (no acceptance that depends on formatting).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_origin::fuzzing::{rest_body, BodyKind};

fuzz_target!(|data: &[u8]| {
    let Some((&k, body)) = data.split_first() else {
        return;
    };
    let kind = BodyKind::ALL[usize::from(k.wrapping_sub(b'0')) % BodyKind::ALL.len()];
    let Ok(()) = rest_body(kind, body) else {
        return;
    };
    let value: serde_json::Value = serde_json::from_slice(body).expect("accepted body is JSON");
    let again = serde_json::to_vec(&value).unwrap();
    assert_eq!(
        rest_body(kind, &again),
        Ok(()),
        "{kind:?} re-encoded is refused"
    );
});
