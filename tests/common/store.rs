//! Reading a disk chunk store from outside: which chunks it holds, and which a content has.

use std::collections::HashSet;
use std::path::Path;

use sitecast_protocol::{chunk_all, ChunkId};

/// The chunk ids of `data` as the origin cuts it.
pub fn ids(data: &[u8]) -> HashSet<ChunkId> {
    chunk_all(data).0.into_iter().map(|c| c.id).collect()
}

/// [`ids`] in hex, as [`stored_chunks`] names them.
pub fn hex_ids(data: &[u8]) -> HashSet<String> {
    ids(data).iter().map(ChunkId::to_hex).collect()
}

/// The chunk files in a disk chunk store (`<data dir>/chunks/<2 hex>/<62 hex>`).
pub fn stored_chunks(data_dir: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    let Ok(fans) = std::fs::read_dir(data_dir.join("chunks")) else {
        return out;
    };
    for fan in fans.flatten() {
        let name = fan.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !fan.path().is_dir() {
            continue;
        }
        // A fan directory may go while it is listed.
        for f in std::fs::read_dir(fan.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let f = f.file_name().to_string_lossy().into_owned();
            if f.len() == 62 {
                out.insert(format!("{name}{f}"));
            }
        }
    }
    out
}
