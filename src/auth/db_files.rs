//! The key database's folder and files are private to the user the server runs as: they
//! hold user ids, roles and key hashes, and the demo key in clear.
//!
//! Rules, applied every time the database is opened for start-up or by the `keys` CLI
//! ([`super::keys::open`], [`super::keys::open_existing`]), whatever the umask:
//! - Only [`secure`] creates: the folder and the file, when the database is to be made
//!   (the server's start, `keys create`). [`tighten`], for a database that must already
//!   exist, creates nothing.
//! - A folder created for the database is 0700 (every level created).
//! - The database file is created 0600 before SQLite opens it. SQLite creates its
//!   journal, WAL and shared-memory files with the database file's mode (not the
//!   umask's), so they are 0600 too; the demo key file is written 0600.
//! - An existing file of the database (`auth.db`, `-wal`, `-shm`, `-journal`,
//!   `demo-api-key`) that group or others may access, as earlier versions left them
//!   (0644), is tightened to its owner's bits only, and the change is logged, if this
//!   user owns it. A file owned by another user is left alone with a warning: chmod
//!   would fail, and it is that user's decision.
//! - An existing folder open to group or others is tightened the same way only when it
//!   holds nothing but the database's files (the `data/` folder an earlier version made
//!   0755). A folder shared with other things (`--db ./auth.db`, `/tmp`) is left as it
//!   is, with a warning: the files in it are 0600 all the same.
//!
//! [`check`] decides from a mode and owners, without I/O; [`secure`] and [`tighten`] do
//! the I/O.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The permission bits of group and others.
const OTHERS: u32 = 0o077;
/// The demo key's file, beside the database.
const DEMO_KEY_FILE: &str = "demo-api-key";

/// What a folder or file's mode calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Only its owner may access it.
    Private,
    /// Ours and open to others: chmod to this mode.
    Tighten { to: u32 },
    /// Open to others but owned by someone else: warn.
    NotOurs,
    /// A folder open to others that holds more than the database: warn.
    Shared,
}

/// What kind of path is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    /// A folder, and whether it holds only the database's files.
    Folder {
        only_database: bool,
    },
}

/// The decision for a path of `kind` with `mode`, owned by `owner`, for the user `me`.
pub fn check(kind: Kind, mode: u32, owner: u32, me: u32) -> Check {
    let perms = mode & 0o7777;
    if perms & OTHERS == 0 {
        Check::Private
    } else if owner != me {
        Check::NotOurs
    } else if kind == (Kind::Folder { only_database: false }) {
        Check::Shared
    } else {
        Check::Tighten { to: perms & !OTHERS }
    }
}

/// The names a database's folder may hold and still be its own: the database, SQLite's
/// files beside it, the demo key file (and its temporary name while written).
pub fn is_database_file(name: &str, db_name: &str) -> bool {
    let sqlite = ["", "-wal", "-shm", "-journal"];
    sqlite.iter().any(|suffix| name.strip_prefix(db_name) == Some(suffix))
        || name == DEMO_KEY_FILE
        || name.strip_prefix(DEMO_KEY_FILE) == Some(".tmp")
}

/// `demo-api-key` in the database's folder: the demo key in clear, 0600 like the rest.
pub fn demo_key_file(db: &Path) -> PathBuf {
    db.parent().unwrap_or(Path::new(".")).join(DEMO_KEY_FILE)
}

/// Creates the database's folder (0700) and file (0600) if missing, and tightens or
/// warns about the ones found open to others (see the module's rules). Only failing to
/// create them is an error: a mode that cannot be read or changed is logged, and SQLite
/// then says whether the database can be used.
pub fn secure(db: &Path) -> io::Result<()> {
    let dir = folder(db);
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    }
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(db) {
        // An empty file is an empty SQLite database.
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    tighten(db);
    Ok(())
}

/// Tightens or warns about the database's folder and files that exist (see the module's
/// rules); creates nothing. What it cannot do, it logs.
pub fn tighten(db: &Path) {
    let dir = folder(db);
    let me = current_uid();
    if dir.exists() {
        let db_name = db.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        // A folder that cannot be listed is not known to be the database's alone.
        let only_database = fs::read_dir(&dir).is_ok_and(|mut entries| {
            entries.all(|entry| {
                entry.is_ok_and(|e| {
                    e.file_name().to_str().is_some_and(|n| is_database_file(n, db_name))
                })
            })
        });
        apply(&dir, Kind::Folder { only_database }, me);
    }
    let mut files = vec![db.to_path_buf(), demo_key_file(db)];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in files.iter().filter(|f| f.exists()) {
        apply(file, Kind::File, me);
    }
}

/// The database's folder (`.` for a bare file name).
fn folder(db: &Path) -> PathBuf {
    match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks one path and acts on the decision; what it cannot do, it logs.
fn apply(path: &Path, kind: Kind, me: u32) {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            crate::warn!("cannot read the key database's mode", path = path.display(), error = e);
            return;
        }
    };
    let mode = meta.mode() & 0o7777;
    match check(kind, mode, meta.uid(), me) {
        Check::Private => {}
        Check::Tighten { to } => match fs::set_permissions(path, fs::Permissions::from_mode(to)) {
            Ok(()) => crate::info!(
                "permissions tightened: other users could read the key database",
                path = path.display(),
                was = format!("{mode:04o}"),
                now = format!("{to:04o}")
            ),
            Err(e) => crate::warn!(
                "the key database is open to other users and its mode cannot be changed",
                path = path.display(),
                mode = format!("{mode:04o}"),
                error = e
            ),
        },
        Check::NotOurs => crate::warn!(
            "the key database is open to other users but owned by another user; left as it is",
            path = path.display(),
            mode = format!("{mode:04o}"),
            owner = meta.uid()
        ),
        Check::Shared => crate::warn!(
            "the key database's folder is open to other users and holds other files; left as \
             it is (the database's own files are private)",
            path = path.display(),
            mode = format!("{mode:04o}")
        ),
    }
}

fn current_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;
    const OTHER: u32 = 0;

    #[test]
    fn a_path_only_its_owner_may_access_is_left_alone() {
        for mode in [0o600, 0o700, 0o400, 0o100600, 0o040700] {
            assert_eq!(check(Kind::File, mode, OTHER, ME), Check::Private, "{mode:o}");
        }
    }

    #[test]
    fn ours_and_open_to_others_is_tightened_to_the_owners_bits() {
        assert_eq!(check(Kind::File, 0o644, ME, ME), Check::Tighten { to: 0o600 });
        assert_eq!(check(Kind::File, 0o100666, ME, ME), Check::Tighten { to: 0o600 });
        let folder = Kind::Folder { only_database: true };
        assert_eq!(check(folder, 0o755, ME, ME), Check::Tighten { to: 0o700 });
        assert_eq!(check(folder, 0o2775, ME, ME), Check::Tighten { to: 0o2700 });
    }

    #[test]
    fn another_users_path_or_a_shared_folder_is_only_warned_about() {
        assert_eq!(check(Kind::File, 0o644, OTHER, ME), Check::NotOurs);
        let shared = Kind::Folder { only_database: false };
        assert_eq!(check(shared, 0o755, ME, ME), Check::Shared);
        assert_eq!(check(shared, 0o1777, OTHER, ME), Check::NotOurs);
        assert_eq!(check(shared, 0o700, ME, ME), Check::Private);
    }

    #[test]
    fn the_database_folder_may_hold_only_the_database_and_its_companions() {
        for name in ["auth.db", "auth.db-wal", "auth.db-shm", "auth.db-journal", "demo-api-key"] {
            assert!(is_database_file(name, "auth.db"), "{name}");
        }
        for name in ["auth.db.bak", "other.db", "notes.txt", "auth.db-walx"] {
            assert!(!is_database_file(name, "auth.db"), "{name}");
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_folder_and_database_are_private_and_loose_old_ones_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("a").join("data").join("auth.db");
        secure(&db).unwrap();
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        assert_eq!(mode(&db), 0o600);

        // As an earlier version left them.
        let dir = db.parent().unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        let wal = dir.join("auth.db-wal");
        fs::write(&wal, b"").unwrap();
        for f in [&db, &wal] {
            fs::set_permissions(f, fs::Permissions::from_mode(0o644)).unwrap();
        }
        secure(&db).unwrap();
        assert_eq!((mode(dir), mode(&db), mode(&wal)), (0o700, 0o600, 0o600));
    }

    #[test]
    fn a_folder_shared_with_other_files_keeps_its_mode_and_the_database_is_private() {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.path().join("notes.txt"), b"mine").unwrap();
        let db = root.path().join("auth.db");
        secure(&db).unwrap();
        assert_eq!((mode(root.path()), mode(&db)), (0o755, 0o600));
    }
}
