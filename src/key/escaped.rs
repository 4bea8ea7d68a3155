//! Store keys shown as text: printable ASCII as itself, every other byte escaped.

use std::fmt;

/// Bytes (a store key) written as text that `redis-cli` reads back between double quotes:
/// printable ASCII as itself, `"` and `\` with a backslash, every other byte as `\xNN`.
///
/// An encoded key holds binary length fields and numeric ids, so this is how the violation log
/// and the audit write store keys: a key copied from either, quoted, names the same entry in
/// `redis-cli GET "…"` (after the store's key prefix).
///
/// # Examples
///
/// ```
/// use scoped_cache::envelope::Escaped;
/// assert_eq!(Escaped(b"sc1:thumb:T\x01\x08\"\\").to_string(), r#"sc1:thumb:T\x01\x08\"\\"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.0 {
            match byte {
                b'"' | b'\\' => write!(f, "\\{}", char::from(byte))?,
                b' '..=b'~' => fmt::Write::write_char(f, char::from(byte))?,
                _ => write!(f, "\\x{byte:02x}")?,
            }
        }
        Ok(())
    }
}
