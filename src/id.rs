//! Tenant and device identifiers: two distinct types that cannot stand in for each other.
//!
//! Both are built from a `u64`, a 16-byte UUID, or a short UTF-8 string. There is deliberately no
//! `From`, `Into`, `Deref`, `AsRef` or shared public trait between them: a `DeviceId` passed where
//! a `TenantId` is expected does not compile (see `tests/ui/`).

use std::fmt;
use std::sync::Arc;

/// Longest text id, in bytes.
pub const MAX_TEXT_ID_LEN: usize = 128;

/// Text ids up to this many bytes live inline (no heap allocation).
const INLINE_LEN: usize = 16;

/// Why a text id was refused. Ids are never truncated or cleaned up: bad input is an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The text was empty.
    #[error("id is empty; give 1 to {MAX_TEXT_ID_LEN} bytes of text")]
    Empty,
    /// The text was longer than [`MAX_TEXT_ID_LEN`] bytes.
    #[error("id is {len} bytes long; the limit is {MAX_TEXT_ID_LEN}")]
    TooLong {
        /// Length of the refused text, in bytes.
        len: usize,
    },
    /// The text contained a control character (which would be unreadable in logs and reports).
    #[error("id contains a control character at byte {at}; use printable text")]
    ControlChar {
        /// Byte offset of the first control character.
        at: usize,
    },
}

/// The value behind an id. Shared by both id types but private, so it cannot be used to convert.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum IdRepr {
    Num(u64),
    Uuid([u8; 16]),
    /// UTF-8 text of 1..=16 bytes; `bytes[len..]` is zero.
    Inline {
        len: u8,
        bytes: [u8; INLINE_LEN],
    },
    /// UTF-8 text of 17..=128 bytes.
    Heap(Arc<str>),
}

impl IdRepr {
    pub(crate) fn text(text: &str) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        if text.len() > MAX_TEXT_ID_LEN {
            return Err(IdError::TooLong { len: text.len() });
        }
        if let Some((at, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
            return Err(IdError::ControlChar { at });
        }
        Ok(if text.len() <= INLINE_LEN {
            let mut bytes = [0; INLINE_LEN];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            // `text.len() <= 16`, so the cast is lossless.
            IdRepr::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            IdRepr::Heap(Arc::from(text))
        })
    }

    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            IdRepr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).ok(),
            IdRepr::Heap(text) => Some(text),
            IdRepr::Num(_) | IdRepr::Uuid(_) => None,
        }
    }
}

impl fmt::Debug for IdRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRepr::Num(n) => write!(f, "{n}"),
            IdRepr::Uuid(u) => write!(f, "uuid:{}", Hyphenated(u)),
            IdRepr::Inline { .. } | IdRepr::Heap(_) => {
                write!(f, "{:?}", self.as_text().unwrap_or_default())
            }
        }
    }
}

impl fmt::Display for IdRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_text() {
            Some(text) => write_visible(text, f),
            None => fmt::Debug::fmt(self, f),
        }
    }
}

/// Writes `text` with every character that could make it read as something else escaped as
/// `\u{…}`: bidirectional controls (`"bob\u{202e}ecila"` would display as "bobalice"),
/// zero-width and other invisible format characters. Reports, logs and error messages show ids
/// through this, so an id chosen by an attacker cannot pose as another in an incident report.
/// (Control characters are refused when an id is made.)
fn write_visible(text: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for c in text.chars() {
        if is_deceptive(c) {
            write!(f, "{}", c.escape_unicode())?;
        } else {
            fmt::Write::write_char(f, c)?;
        }
    }
    Ok(())
}

/// Invisible or direction-changing characters (Unicode format characters in use as such).
fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

struct Hyphenated<'a>(&'a [u8; 16]);

impl fmt::Display for Hyphenated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $example:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) IdRepr);

        impl $name {
            #[doc = concat!("An id made of UTF-8 text (1 to 128 bytes, no control characters).")]
            ///
            /// Text of up to 16 bytes is stored inline; longer text is shared behind an `Arc`,
            /// so cloning is always cheap.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("use scoped_cache::", stringify!($name), ";")]
            #[doc = concat!("let id = ", stringify!($name), "::new(\"", $example, "\")?;")]
            #[doc = concat!("assert_eq!(id.as_str(), Some(\"", $example, "\"));")]
            #[doc = concat!("assert!(", stringify!($name), "::new(\"\").is_err());")]
            /// # Ok::<(), scoped_cache::IdError>(())
            /// ```
            ///
            /// # Errors
            ///
            /// [`IdError`] when the text is empty, longer than 128 bytes or has a control
            /// character. Nothing is truncated.
            pub fn new(text: &str) -> Result<Self, IdError> {
                IdRepr::text(text).map(Self)
            }

            /// An id made of a number. `from_u64(42)` and `new("42")` are different ids.
            pub const fn from_u64(number: u64) -> Self {
                Self(IdRepr::Num(number))
            }

            /// An id made of the 16 bytes of a UUID (any version), in network order.
            pub const fn from_uuid(bytes: [u8; 16]) -> Self {
                Self(IdRepr::Uuid(bytes))
            }

            /// The number, when this id was made with `from_u64`.
            pub fn as_u64(&self) -> Option<u64> {
                match self.0 {
                    IdRepr::Num(n) => Some(n),
                    _ => None,
                }
            }

            /// The UUID bytes, when this id was made with `from_uuid`.
            pub fn as_uuid(&self) -> Option<[u8; 16]> {
                match self.0 {
                    IdRepr::Uuid(u) => Some(u),
                    _ => None,
                }
            }

            /// The text, when this id was made with `new`.
            pub fn as_str(&self) -> Option<&str> {
                self.0.as_text()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

define_id!(
    /// Who owns cached data: a user, an account, an organisation.
    ///
    /// Distinct from [`DeviceId`]; neither converts into the other. Made of a number, a UUID or
    /// short text; the three kinds never compare equal, so `from_u64(42)` is not `new("42")`.
    /// Cloning is cheap (at most an `Arc` increment).
    ///
    /// # Examples
    ///
    /// ```
    /// use scoped_cache::{IdError, TenantId};
    /// let by_name = TenantId::new("user-42")?;
    /// assert_eq!(by_name.to_string(), "user-42");
    /// assert_ne!(TenantId::from_u64(42), TenantId::new("42")?);
    /// assert_eq!(TenantId::from_u64(42).as_u64(), Some(42));
    /// assert_eq!(TenantId::new("bad\nid"), Err(IdError::ControlChar { at: 3 }));
    /// # Ok::<(), IdError>(())
    /// ```
    ///
    /// A device id is not a tenant id:
    ///
    /// ```compile_fail
    /// use scoped_cache::{DeviceId, TenantId};
    /// let tenant: TenantId = DeviceId::from_u64(7);
    /// ```
    TenantId,
    "user-42"
);

define_id!(
    /// Which of a tenant's devices the data belongs to: a camera, a phone, a sensor.
    ///
    /// Distinct from [`TenantId`]; neither converts into the other. Made of a number, a UUID or
    /// short text, like [`TenantId`].
    ///
    /// # Examples
    ///
    /// ```
    /// use scoped_cache::DeviceId;
    /// let camera = DeviceId::from_uuid([0xab; 16]);
    /// assert_eq!(camera.to_string(), "uuid:abababab-abab-abab-abab-abababababab");
    /// assert_eq!(camera.as_uuid(), Some([0xab; 16]));
    /// assert_eq!(camera.as_str(), None);
    /// ```
    ///
    /// A tenant id is not a device id:
    ///
    /// ```compile_fail
    /// use scoped_cache::{DeviceId, TenantId};
    /// let device: DeviceId = TenantId::from_u64(42);
    /// ```
    DeviceId,
    "cam-7"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Owner;
    use crate::violation::Violation;

    #[test]
    fn ids_that_could_pose_as_others_are_shown_escaped() {
        // Displayed raw, U+202E turns "bob" + "ecila" into "bobalice" on a terminal.
        let spoof = TenantId::new("bob\u{202e}ecila").expect("a valid id");
        let zero_width = DeviceId::new("cam\u{200b}7").expect("a valid id");
        assert_eq!(spoof.to_string(), "bob\\u{202e}ecila");
        assert_eq!(zero_width.to_string(), "cam\\u{200b}7");
        assert_eq!(format!("{spoof:?}"), "TenantId(\"bob\\u{202e}ecila\")");
        let report = Violation::OwnerMismatch {
            expected: Owner::new(TenantId::new("alice").expect("valid"), zero_width.clone()),
            found: Owner::new(spoof.clone(), zero_width),
        }
        .to_string();
        assert!(
            !report.contains('\u{202e}') && !report.contains('\u{200b}'),
            "{report}"
        );
        assert!(report.contains("bob\\u{202e}ecila"), "{report}");
        // Ordinary text, accents and all, is shown as it is.
        let plain = TenantId::new("zoë-42").expect("a valid id");
        assert_eq!(plain.to_string(), "zoë-42");
    }

    #[test]
    fn text_ids_are_validated_not_truncated() {
        assert_eq!(TenantId::new(""), Err(IdError::Empty));
        let long = "x".repeat(MAX_TEXT_ID_LEN + 1);
        assert_eq!(TenantId::new(&long), Err(IdError::TooLong { len: 129 }));
        assert_eq!(DeviceId::new("ab\ncd"), Err(IdError::ControlChar { at: 2 }));
        let max = "é".repeat(MAX_TEXT_ID_LEN / 2);
        assert_eq!(
            TenantId::new(&max).map(|id| id.as_str().map(str::len)),
            Ok(Some(128))
        );
    }

    #[test]
    fn short_ids_are_inline_and_long_ids_shared() {
        assert!(matches!(
            TenantId::new("sixteen-bytes-id").map(|t| t.0),
            Ok(IdRepr::Inline { len: 16, .. })
        ));
        assert!(matches!(
            TenantId::new("seventeen-bytes-i").map(|t| t.0),
            Ok(IdRepr::Heap(_))
        ));
        assert!(std::mem::size_of::<TenantId>() <= 24);
    }

    #[test]
    fn kinds_are_distinct_and_readable() {
        assert_ne!(
            TenantId::from_u64(42),
            TenantId::new("42").unwrap_or(TenantId::from_u64(0))
        );
        assert_eq!(format!("{:?}", TenantId::from_u64(42)), "TenantId(42)");
        assert_eq!(
            format!("{:?}", DeviceId::new("cam-7").ok()),
            "Some(DeviceId(\"cam-7\"))"
        );
        let uuid = DeviceId::from_uuid([0xab; 16]);
        assert_eq!(
            uuid.to_string(),
            "uuid:abababab-abab-abab-abab-abababababab"
        );
    }
}
