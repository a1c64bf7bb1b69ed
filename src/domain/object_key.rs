//! `ObjectKey`: where a finished upload lives in storage, built from the upload id and a
//! sanitized file name so that no client-chosen name can escape its place.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::UploadId;

/// Longest file-name part of a key, in bytes (the usual file-system name limit).
pub const MAX_NAME_BYTES: usize = 255;

/// `<upload_id>/<sanitized file name>`: unique per upload, a single safe path component
/// after the id, never empty, never starting with `.` or `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// The key for `filename` in upload `id`.
    pub fn new(id: &UploadId, filename: &str) -> Self {
        Self(format!("{id}/{}", sanitize_name(filename)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Turns any client-supplied name into one harmless path component: separators become
/// `_`, control characters and invisible formatting characters go, runs of dots shrink to one, leading dots and spaces go, and
/// the result is cut to `MAX_NAME_BYTES` keeping the extension when it is short.
fn sanitize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_NAME_BYTES));
    for c in name.chars() {
        match c {
            '/' | '\\' => out.push('_'),
            c if c.is_control() || is_invisible(c) => {}
            '.' if out.ends_with('.') => {}
            c => out.push(c),
        }
    }
    let trimmed = out.trim_start_matches(['.', ' ']).trim_end();
    let name = if trimmed.is_empty() { "file" } else { trimmed };
    truncate_keeping_extension(name)
}

/// Bidi controls (which can make `exe.mp4` display as `mp4.exe`) and zero-width
/// characters (which make two names look alike): nothing a file name needs.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
        || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

fn truncate_keeping_extension(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_owned();
    }
    let ext = name.rfind('.').map(|dot| &name[dot..]).filter(|ext| ext.len() <= 16).unwrap_or("");
    let mut cut = MAX_NAME_BYTES - ext.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    // The cut may end on a dot, and the extension starts with one: no `..` may form.
    let head = name[..cut].trim_end_matches('.');
    format!("{head}{ext}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn name_of(key: &ObjectKey) -> &str {
        key.as_str().split_once('/').map(|(_, name)| name).unwrap_or_default()
    }

    #[test]
    fn path_traversal_stays_inside_the_upload() {
        let key = ObjectKey::new(&UploadId::new(), "../../etc/passwd");
        assert_eq!(name_of(&key), "_._etc_passwd");
    }

    #[test]
    fn control_characters_and_leading_dots_are_removed() {
        let key = ObjectKey::new(&UploadId::new(), "..\u{0}.hid\nden\r.mp4");
        assert_eq!(name_of(&key), "hidden.mp4");
    }

    #[test]
    fn bidi_overrides_and_zero_width_characters_are_removed() {
        let key = ObjectKey::new(&UploadId::new(), "invoice\u{202E}4pm.exe");
        assert_eq!(name_of(&key), "invoice4pm.exe");
        let key = ObjectKey::new(
            &UploadId::new(),
            "\u{FEFF}a\u{200B}b\u{200C}c\u{200D}d\u{2060}e\u{2066}f\u{2069}g\u{200E}h\u{200F}i\u{061C}.txt",
        );
        assert_eq!(name_of(&key), "abcdefghi.txt");
        assert_eq!(name_of(&ObjectKey::new(&UploadId::new(), "\u{202A}\u{202B}\u{202C}\u{202D}")), "file");
        assert_eq!(name_of(&ObjectKey::new(&UploadId::new(), "\u{200B}.hidden")), "hidden", "no dot is left leading");
    }

    #[test]
    fn an_empty_name_gets_a_placeholder() {
        assert_eq!(name_of(&ObjectKey::new(&UploadId::new(), "\u{1}..")), "file");
    }

    #[test]
    fn long_names_are_cut_to_255_bytes_keeping_the_extension() {
        let key = ObjectKey::new(&UploadId::new(), &format!("{}.mp4", "é".repeat(600)));
        let name = name_of(&key);
        assert!(name.len() <= MAX_NAME_BYTES);
        assert!(name.ends_with(".mp4"));
    }

    #[test]
    fn a_cut_ending_on_a_dot_does_not_form_a_double_dot() {
        let name = format!("{}.{}.mp4", "a".repeat(250), "x".repeat(10));
        let key = ObjectKey::new(&UploadId::new(), &name);
        assert!(!name_of(&key).contains(".."), "{}", name_of(&key));
        assert!(name_of(&key).ends_with("a.mp4"));
    }

    proptest! {
        #[test]
        fn any_name_gives_one_safe_component(name in ".{0,400}") {
            let key = ObjectKey::new(&UploadId::new(), &name);
            let name = name_of(&key);
            prop_assert!(!name.is_empty() && name.len() <= MAX_NAME_BYTES);
            prop_assert!(!name.contains('/') && !name.contains('\\') && !name.contains(".."));
            prop_assert!(!name.starts_with('.'));
            prop_assert!(!name.chars().any(|c| c.is_control() || is_invisible(c)));
        }
    }
}
