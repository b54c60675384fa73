//! Reading the small files an operator names (fleet file, CA bundles, tokens, WireGuard
//! configs) with a size cap. A path that names `/dev/zero`, a FIFO or a runaway log must give
//! a clear error, not hang `check-config` or fill memory.

use std::io::{self, Read};
use std::path::Path;

/// The largest file read: far above any real fleet file, certificate bundle or token.
pub const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// The whole file, if it is a regular file of at most `MAX_BYTES`.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_BYTES) as usize);
    // The length may change under us: read one byte past the cap to notice.
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the limit of {MAX_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// The whole file as UTF-8 text, with the same limits as `read`.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_refused_at_once() {
        let err = read(Path::new("/dev/zero")).expect_err("not a regular file");
        assert_eq!(err.to_string(), "not a regular file");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_and_a_small_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_BYTES as usize + 1]).unwrap();
        assert!(read(&big).unwrap_err().to_string().contains("limit"));
        let small = dir.path().join("small");
        std::fs::write(&small, "token\n").unwrap();
        assert_eq!(read_to_string(&small).unwrap(), "token\n");
    }
}
