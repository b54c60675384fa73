//! What the SQLite store checks and sets on disk before it trusts a file: the directory and
//! the database (with its WAL and shared-memory files) readable by this node's user only,
//! and SQLite's own integrity check. It never repairs a damaged file: a node that reads a
//! damaged store could forget a promise it made, so it refuses to start instead.

use std::fs;
use std::path::Path;

/// Owner-only: the store holds what this node promised and decided.
#[cfg(unix)]
const PRIVATE_DIR: u32 = 0o700;
#[cfg(unix)]
const PRIVATE_FILE: u32 = 0o600;

/// How many problems `quick_check` reports at most; the first few name the damage.
const PROBLEMS_SHOWN: u32 = 10;

/// Creates `dir` (and missing parents) readable by its owner only; an existing directory is
/// left as it is, with a warning when others can read it.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the store directory is readable by other users; `chmod 700` it"
                );
            }
        }
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(PRIVATE_DIR);
    }
    builder.create(dir)
}

/// Makes sure the database file exists with owner-only permissions before SQLite opens it:
/// SQLite creates its `-wal` and `-shm` files with the main file's permissions, so these
/// follow. An existing file (and its companions) that others may read is narrowed to 0600.
pub(super) fn prepare_private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(path)
        {
            // An empty file is a new SQLite database.
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            let Ok(meta) = fs::metadata(file) else {
                continue;
            };
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %file.display(), "the store was readable by other users; narrowed it to 0600");
                fs::set_permissions(file, fs::Permissions::from_mode(PRIVATE_FILE))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// SQLite's `quick_check` (every page and b-tree, without cross-checking indexes against
/// their tables): the problems it finds, empty for a sound file.
pub(super) fn damage(conn: &rusqlite::Connection) -> Vec<String> {
    let found = conn
        .prepare(&format!("PRAGMA quick_check({PROBLEMS_SHOWN})"))
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        });
    match found {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Vec::new(),
        Ok(lines) => lines,
        // A page too damaged to walk at all fails the pragma itself.
        Err(e) => vec![e.to_string()],
    }
}
