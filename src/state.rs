//! The state directory: what the daemon keeps across restarts (file
//! sources' offsets, TAXII checkpoints and objects).

use std::path::Path;

use serde::Serialize;

/// `name` as one safe path component of a state file or folder: letters,
/// digits, `-`, `_` and `.` kept, anything else (`/` above all) as `_`.
pub fn path_component(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `value` as JSON to `path` atomically: a temporary file beside it,
/// then a rename, so a crash leaves the old state or the new, never half.
///
/// # Errors
/// The directory cannot be created or written.
pub fn save(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(value)?)?;
    std::fs::rename(&tmp, path)
}
