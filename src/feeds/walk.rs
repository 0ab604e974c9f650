//! Which files of a feed folder are feeds. Folders are walked recursively,
//! as cloned from a repository: hidden entries (`.git/`) are skipped,
//! special files (FIFOs, devices, sockets) are skipped with a reason,
//! symlinks are followed with loop detection, and documentation, code and
//! configuration files are not feeds by default. A feed's own `include` and
//! `exclude` globs (globset syntax, matched against the path relative to the
//! feed's root and against the file name) override the defaults.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::FeedError;

/// What is not a feed unless a feed's `include` says so.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "README*",
    "LICENSE*",
    "LICENCE*",
    "COPYING*",
    "CHANGELOG*",
    "CHANGES*",
    "NOTICE*",
    "AUTHORS*",
    "CONTRIBUTING*",
    "*.md",
    "*.rst",
    "*.adoc",
    "*.html",
    "*.htm",
    "*.pdf",
    "*.png",
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.svg",
    "*.ico",
    "*.webp",
    "*.bmp",
    "*.py",
    "*.sh",
    "*.ps1",
    "*.bat",
    "*.cmd",
    "*.js",
    "*.ts",
    "*.rb",
    "*.pl",
    "*.go",
    "*.rs",
    "*.c",
    "*.h",
    "*.java",
    "*.php",
    "Makefile",
    "Dockerfile",
    "*.yml",
    "*.yaml",
    "*.toml",
    "*.ini",
    "*.cfg",
    "*.conf",
    "*.lock",
    "*.gitignore",
];

/// Deepest folder nesting walked (a guard against pathological trees).
pub const MAX_DEPTH: usize = 64;

/// A feed's file selection: its globs over the defaults.
#[derive(Clone, Debug)]
pub struct FileFilter {
    include: GlobSet,
    has_include: bool,
    exclude: GlobSet,
    defaults: GlobSet,
}

fn set(globs: &[impl AsRef<str>]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let g = g.as_ref();
        b.add(Glob::new(g).map_err(|e| format!("glob {g:?}: {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
}

impl Default for FileFilter {
    fn default() -> Self {
        FileFilter::new(&[] as &[&str], &[] as &[&str]).expect("the default globs are valid")
    }
}

impl FileFilter {
    /// The filter of a feed with these `include` and `exclude` globs.
    ///
    /// # Errors
    /// A glob that does not parse, named.
    pub fn new(
        include: &[impl AsRef<str>],
        exclude: &[impl AsRef<str>],
    ) -> Result<FileFilter, String> {
        Ok(FileFilter {
            include: set(include)?,
            has_include: !include.is_empty(),
            exclude: set(exclude)?,
            defaults: set(DEFAULT_EXCLUDES)?,
        })
    }

    /// Whether the file at `rel` (relative to the feed's root) is a feed.
    pub fn wants(&self, rel: &Path) -> bool {
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let matches = |s: &GlobSet| s.is_match(rel) || s.is_match(name);
        if matches(&self.exclude) {
            return false;
        }
        if self.has_include {
            return matches(&self.include);
        }
        !matches(&self.defaults)
    }
}

/// The files of a feed path, and what was passed over with a reason.
#[derive(Debug, Default)]
pub struct Listing {
    /// Feed files, in path order.
    pub files: Vec<PathBuf>,
    /// Entries that are not regular files or could not be walked: (path, why).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Lists the feed files under `root`: the file itself when `root` is a file
/// (always wanted), else every wanted regular file below it.
///
/// # Errors
/// `root` itself cannot be read.
pub fn list(root: &Path, filter: &FileFilter) -> Result<Listing, FeedError> {
    let err = |p: &Path, error| FeedError {
        path: p.to_owned(),
        error,
    };
    let meta = std::fs::metadata(root).map_err(|e| err(root, e))?;
    let mut out = Listing::default();
    if !meta.is_dir() {
        if meta.is_file() {
            out.files.push(root.to_owned());
        } else {
            out.skipped.push((root.to_owned(), kind_of(&meta).into()));
        }
        return Ok(out);
    }
    let mut seen = HashSet::new();
    seen.insert((meta.dev(), meta.ino()));
    walk(root, root, filter, 0, &mut seen, &mut out).map_err(|e| err(root, e))?;
    out.files.sort();
    Ok(out)
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO, not a regular file"
    } else if t.is_char_device() || t.is_block_device() {
        "a device, not a regular file"
    } else if t.is_socket() {
        "a socket, not a regular file"
    } else {
        "not a regular file"
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    filter: &FileFilter,
    depth: usize,
    seen: &mut HashSet<(u64, u64)>,
    out: &mut Listing,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue; // .git/, editors' swap files
        }
        let path = entry.path();
        // metadata follows symlinks: a link is what it points to.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                out.skipped.push((path, format!("cannot be read: {e}")));
                continue;
            }
        };
        let rel = path.strip_prefix(root).unwrap_or(&path);
        if meta.is_dir() {
            if !seen.insert((meta.dev(), meta.ino())) {
                out.skipped
                    .push((path, "a folder already walked (a symlink loop)".into()));
            } else if depth + 1 >= MAX_DEPTH {
                out.skipped
                    .push((path, format!("deeper than {MAX_DEPTH} folders")));
            } else if let Err(e) = walk(root, &path, filter, depth + 1, seen, out) {
                out.skipped.push((path, format!("cannot be read: {e}")));
            }
        } else if !filter.wants(rel) {
            continue;
        } else if meta.is_file() {
            out.files.push(path);
        } else {
            out.skipped.push((path, kind_of(&meta).into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let d = FileFilter::default();
        for no in [
            "README",
            "README.md",
            "docs/LICENSE.txt",
            "x/notes.md",
            "build.sh",
            "a/b/c.yml",
        ] {
            assert!(!d.wants(Path::new(no)), "{no}");
        }
        for yes in [
            "ips.txt",
            "2024/05/iocs.csv",
            "events/e.json",
            "intel.dat",
            "x.xml",
        ] {
            assert!(d.wants(Path::new(yes)), "{yes}");
        }
        let f = FileFilter::new(&["*.md"], &["2019/**"]).unwrap();
        assert!(f.wants(Path::new("iocs.md")));
        assert!(!f.wants(Path::new("ips.txt")));
        assert!(!f.wants(Path::new("2019/iocs.md")));
        assert!(FileFilter::new(&["a["], &[] as &[&str]).is_err());
    }
}
