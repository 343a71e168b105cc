//! FTP and SFTP names. Input lines: a working directory, a name.
//!
//! Whatever a client sends resolves to a valid catalog path or an error, never above the
//! root: no `.`/`..` segment survives, resolving the result again changes nothing, a
//! relative name without `..` stays under the working directory, the SFTP path is the name
//! resolved from `/`, and the FTP path (libunftp joins the name to its working directory
//! first) is the joined path resolved from `/`.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sitecast_edge::fuzzing::{ftp_path, resolve, sftp_path};
use sitecast_protocol::CatalogPath;

fn check(p: &CatalogPath) {
    assert_eq!(CatalogPath::parse(p.as_str()).as_ref(), Ok(p));
    assert!(!p.segments().any(|s| s == ".." || s == "." || s.is_empty()));
    assert_eq!(
        resolve("/", p.as_str()).as_ref(),
        Ok(p),
        "resolving is idempotent"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (cwd, name) = s.split_once('\n').unwrap_or(("/", s));
    // A session's working directory is always a resolved path.
    let Ok(cwd) = resolve("/", cwd) else { return };
    let r = resolve(cwd.as_str(), name);
    if let Ok(p) = &r {
        check(p);
        let relative = !name.starts_with('/') && name != "~" && !name.starts_with("~/");
        if relative && !name.split('/').any(|seg| seg == "..") {
            assert!(p.is_under(&cwd), "{name:?} from {cwd} left it: {p}");
        }
    }
    let sftp = sftp_path(name);
    assert_eq!(sftp, resolve("/", name));
    if let Ok(p) = &sftp {
        check(p);
    }
    let joined = Path::new(cwd.as_str()).join(name);
    if let Ok(p) = ftp_path(&joined) {
        check(&p);
        assert_eq!(Ok(&p), resolve("/", joined.to_str().unwrap()).as_ref());
    }
});
