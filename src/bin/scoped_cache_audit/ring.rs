//! The key ring file: the secrets the fleet seals with, one key per line.
//!
//! ```text
//! # comments and blank lines are ignored; the first key listed is the signing key
//! 2 base64:9vC2mWQ0m0k3v6HqgS1b0JmS3J5Yc0yq0wZ9mHkq3xE=
//! 1 text:the old secret, as the service was given it
//! ```
//!
//! Each line is a key id, a space, and the secret: `base64:` and its standard base64 encoding
//! (for random bytes), or `text:` and the secret's text exactly as the service passes it to
//! `KeyRing::new` (as `thumbnail_service` does with `THUMBNAIL_SERVICE_SECRET`), to the end of
//! the line. Error messages name the line, never the secret.

use base64::Engine as _;
use scoped_cache::{KeyId, KeyRing};
use std::path::Path;

/// Reads the key ring at `path`.
///
/// # Errors
///
/// A message naming the file and line when it cannot be read or a line is not a key.
pub fn read_ring(path: &Path) -> Result<KeyRing, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the secret file {}: {error}", path.display()))?;
    parse_ring(&text).map_err(|error| format!("secret file {}: {error}", path.display()))
}

/// Parses a key ring file's text.
pub fn parse_ring(text: &str) -> Result<KeyRing, String> {
    let mut ring: Option<KeyRing> = None;
    for (number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line)) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (id, secret) = parse_line(line).map_err(|why| format!("line {number}: {why}"))?;
        ring = Some(
            match ring {
                None => KeyRing::new(id, &secret),
                Some(ring) => ring.with_verifier(id, &secret),
            }
            .map_err(|error| format!("line {number}: {error}"))?,
        );
    }
    ring.ok_or_else(|| {
        "no key in it; write one key per line as \"ID base64:SECRET\" or \"ID text:SECRET\"".into()
    })
}

fn parse_line(line: &str) -> Result<(KeyId, Vec<u8>), String> {
    let usage = "expected \"ID base64:SECRET\" or \"ID text:SECRET\"";
    let (id, secret) = line.split_once(' ').ok_or(usage)?;
    let id = id
        .parse::<u32>()
        .map_err(|_| format!("the key id is not a number from 0 to {}; {usage}", u32::MAX))?;
    let secret = if let Some(encoded) = secret.strip_prefix("base64:") {
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| "the secret after base64: is not valid standard base64".to_owned())?
    } else if let Some(text) = secret.strip_prefix("text:") {
        text.as_bytes().to_vec()
    } else {
        return Err(usage.into());
    };
    Ok((KeyId(id), secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_parse_and_bad_lines_are_named_without_their_secret() {
        let ring = parse_ring(
            "# fleet ring\n\n2 base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n1 text:an old secret of at least thirty-two bytes\n",
        )
        .unwrap();
        assert_eq!(ring.signing_id(), KeyId(2));
        assert!(format!("{ring:?}").contains("[KeyId(2), KeyId(1)]"));
        for (bad, says) in [
            ("", "no key"),
            ("1 text:short", "line 1"),
            (
                "x text:an old secret of at least thirty-two bytes",
                "key id",
            ),
            ("1 hex:00", "expected"),
            ("1 base64:***", "base64"),
            (
                "1text:an old secret of at least thirty-two bytes",
                "expected",
            ),
            (
                "1 text:an old secret of at least thirty-two bytes\n1 text:another secret of at least thirty-two",
                "line 2",
            ),
        ] {
            let error = parse_ring(bad).err().unwrap_or_default();
            assert!(error.contains(says), "{bad:?}: {error}");
            assert!(!error.contains("thirty"), "{error} repeats the secret");
        }
    }
}
