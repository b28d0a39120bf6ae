//! File ids: a 36-character base32 prefix (the creation time, then 130 random bits) and a
//! sanitised copy of the client's file name, so ids are unguessable, readable in logs, and safe
//! in URLs and file systems without any encoding.
//!
//! The prefix starts with the creation time in milliseconds, like a ULID, so ids made one after
//! another sort together: a store's index on the id then grows at its end instead of touching a
//! random page for every new file (with SQLite, several times fewer pages written per upload
//! link). What stays secret is the 130 random bits after it (the contract asks for at least
//! 128); the creation time is no secret (the file list shows it).
//!
//! Ids made by earlier versions have a 26-character prefix (the time, then 80 random bits). They are
//! still valid, so files uploaded then stay reachable; no new id has that shape.

/// Length of the prefix (base32, 5 bits per character).
const PREFIX_LEN: usize = 36;
/// Length of the prefix of ids made by earlier versions: the same time, then only 80 random bits.
const LEGACY_PREFIX_LEN: usize = 26;
/// Characters of the prefix that hold the creation time (50 bits of milliseconds).
const TIME_LEN: usize = 10;
/// Longest sanitised name kept in an id.
const MAX_NAME_LEN: usize = 100;

/// Reduces a client-supplied file name to `[A-Za-z0-9._-]`, at most 100 bytes, never starting
/// with a dot; other characters become `-` (runs collapsed). An empty result becomes `file`.
pub fn sanitise_filename(name: &str) -> String {
    // Keep only the last path component a client might have sent.
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut out = String::with_capacity(base.len().min(MAX_NAME_LEN));
    for c in base.chars() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let c = if keep { c } else { '-' };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        if out.len() >= MAX_NAME_LEN {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim_start_matches(['.', '-']).trim_end_matches('-');
    if trimmed.is_empty() {
        "file".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The system's random generator failed: nothing that must be unguessable can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

/// `N` bytes from the system's cryptographic random generator, or an error when it fails, so a
/// caller never goes on with predictable ids, tokens or names.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    openssl::rand::rand_bytes(&mut out).map_err(|e| RandomError(e.to_string()))?;
    Ok(out)
}

/// A new file id for `filename`: 10 base32 characters of the creation time in milliseconds, 26
/// random ones (130 bits), `_`, the sanitised name. Fails only when the system's random
/// generator does.
pub fn new_file_id(filename: &str) -> Result<String, RandomError> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    new_file_id_at(filename, millis)
}

fn new_file_id_at(filename: &str, millis: u64) -> Result<String, RandomError> {
    // RFC 4648's base32 characters, in byte order here so that ids compare as their times do.
    const ORDERED: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
    let random = random_bytes::<{ PREFIX_LEN - TIME_LEN }>()?;
    let mut id = String::with_capacity(PREFIX_LEN + 1 + filename.len().min(MAX_NAME_LEN));
    for i in (0..TIME_LEN).rev() {
        id.push(ORDERED[((millis >> (5 * i)) & 31) as usize] as char);
    }
    id.extend(random.iter().map(|b| ORDERED[(b & 31) as usize] as char));
    id.push('_');
    id.push_str(&sanitise_filename(filename));
    Ok(id)
}

/// Whether `id` has the shape [`new_file_id`] produces (or produced in earlier versions, with a shorter
/// prefix). Anything else is refused before it can reach a store or a path.
pub fn is_valid_file_id(id: &str) -> bool {
    let Some((prefix, name)) = id.split_once('_') else {
        return false;
    };
    (prefix.len() == PREFIX_LEN || prefix.len() == LEGACY_PREFIX_LEN)
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        && !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The object key of a file id.
pub fn object_key(file_id: &str) -> String {
    format!("uploads/{file_id}")
}

/// Whether `value` looks like a MIME type (`type/subtype` with optional parameters), printable
/// ASCII, at most 255 bytes.
pub fn is_valid_content_type(value: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    if value.len() > 255 || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return false;
    }
    let essence = value.split(';').next().unwrap_or("").trim();
    match essence.split_once('/') {
        Some((t, s)) => token(t) && token(s),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_names() {
        assert_eq!(sanitise_filename("document.pdf"), "document.pdf");
        assert_eq!(sanitise_filename("../../etc/passwd"), "passwd");
        assert_eq!(
            sanitise_filename("C:\\x\\report 2024 (final).pdf"),
            "report-2024-final-.pdf"
        );
        assert_eq!(sanitise_filename("..."), "file");
        assert_eq!(sanitise_filename("naïve résumé.txt"), "na-ve-r-sum-.txt");
        assert_eq!(sanitise_filename("\0\n"), "file");
        assert_eq!(sanitise_filename(&"a".repeat(500)).len(), 100);
    }

    #[test]
    fn ids_validate() {
        let id = new_file_id("My File.pdf").unwrap();
        assert!(is_valid_file_id(&id), "{id}");
        assert!(id.ends_with("_My-File.pdf"));
        assert_eq!(id.find('_'), Some(36), "{id}");
        // Ids made by earlier versions (26-character prefix) still name their files.
        assert!(is_valid_file_id("n7c5hq2b7adkf3m6xzp4rtw2ye_report.pdf"));
        assert_ne!(new_file_id("x").unwrap(), new_file_id("x").unwrap());
        // Later ids sort after earlier ones, as bytes (what the stores' indexes compare).
        let mut previous = new_file_id_at("x", 0).unwrap();
        assert!(previous.starts_with("2222222222"), "{previous}");
        for millis in [
            1,
            31,
            32,
            1_000,
            1_765_000_000_000,
            1_765_000_000_001,
            (1 << 50) - 1,
        ] {
            let id = new_file_id_at("x", millis).unwrap();
            assert!(is_valid_file_id(&id), "{id}");
            assert!(id > previous, "{id} after {previous}");
            previous = id;
        }
        assert!(previous.starts_with("zzzzzzzzzz"), "{previous}");
        for bad in [
            "",
            "short_x",
            "abcdefghijklmnopqrstuvwxyz2345_x",
            "abcdefghijklmnopqrstuvwxyz234567abcde_x",
            "abcdefghijklmnopqrstuvwxyz234567abcd_",
            "abcdefghijklmnopqrstuvwxyz_",
            "abcdefghijklmnopqrstuvwxyz_..",
            "abcdefghijklmnopqrstuvwxyz_a/b",
            "abcdefghijklmnopqrstuvwxyz_a%2Fb",
            "abcdefghijklmnopqrstuvwxyz_a\0",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ_a",
        ] {
            assert!(!is_valid_file_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn content_types() {
        assert!(is_valid_content_type("application/pdf"));
        assert!(is_valid_content_type("text/plain; charset=utf-8"));
        assert!(!is_valid_content_type("pdf"));
        assert!(!is_valid_content_type("text/plain\r\nX: y"));
        assert!(!is_valid_content_type(""));
    }
}
