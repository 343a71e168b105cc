//! Opening a SQLite database: WAL, foreign keys, a busy timeout, and numbered migrations.
//!
//! Migrations are `(version, sql)` pairs, versions starting at 1 and increasing by one; the
//! database's `PRAGMA user_version` records the last applied one. Each migration runs in its
//! own transaction, so a crash mid-migration leaves the previous version intact. A database
//! newer than this build (a higher `user_version`) is refused rather than misread.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// What went wrong opening or migrating a database.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// SQLite refused.
    #[error("sqlite {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database file cannot be created or made private.
    #[error("database {path}: cannot create it or make it 0600: {source}")]
    Permissions {
        /// The database file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database was written by a newer sitecast.
    #[error("database {path} is at schema version {found}, newer than this build's {known}")]
    TooNew {
        /// The database file.
        path: String,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

/// Create `path` as an empty file readable by its owner only (0600), or tighten an existing one
/// to 0600: databases hold password hashes and grants. SQLite gives the `-wal` and `-shm`
/// files the database file's mode.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        crate::datadir::make_private(Path::new(&file), 0o600)?;
    }
    Ok(())
}

/// Open (creating) the database at `path` and bring it to the newest migration.
///
/// # Errors
/// SQLite errors, or a database newer than `migrations`.
pub fn open(path: &Path, migrations: &[(i64, &str)]) -> Result<Connection, SqliteError> {
    let name = path.display().to_string();
    let err = |source| SqliteError::Sqlite {
        path: name.clone(),
        source,
    };
    private_file(path).map_err(|e| SqliteError::Permissions {
        path: name.clone(),
        source: e,
    })?;
    let mut conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err)?;
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let known = migrations.last().map_or(0, |m| m.0);
    if current > known {
        return Err(SqliteError::TooNew {
            path: name,
            found: current,
            known,
        });
    }
    for (version, sql) in migrations.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(db = %name, version, "applied migration");
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.sqlite");
        let m1: &[(i64, &str)] = &[(1, "CREATE TABLE a (x INTEGER);")];
        let m2: &[(i64, &str)] = &[
            (1, "CREATE TABLE a (x INTEGER);"),
            (2, "CREATE TABLE b (y INTEGER);"),
        ];
        open(&p, m1).unwrap();
        let c = open(&p, m2).unwrap();
        c.execute("INSERT INTO b VALUES (1)", []).unwrap();
        drop(c);
        open(&p, m2).unwrap();
        assert!(matches!(
            open(&p, m1),
            Err(SqliteError::TooNew { found: 2, .. })
        ));
    }

    #[test]
    fn the_database_and_its_journal_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.sqlite");
        let m: &[(i64, &str)] = &[(1, "CREATE TABLE a (x INTEGER);")];
        let c = open(&p, m).unwrap();
        c.execute("INSERT INTO a VALUES (1)", []).unwrap();
        for name in ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
        }
        drop(c);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        open(&p, m).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "an old 0644 database is tightened");
    }
}
