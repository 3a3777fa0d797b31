//! Names that people outside choose — a WhatsApp push name, a group subject, a file name,
//! an API caller's device or key name — end up in dashboards, logs, headers and file
//! systems. Control characters there forge log lines and headers; bidi overrides make
//! `gpj.exe` read as `exe.jpg`. Names from WhatsApp are neutralised (we cannot refuse a
//! stranger's message); names from API callers are refused with a reason instead.

/// Characters that reorder or hide text: bidi embeddings, overrides and isolates, the
/// directional marks, and invisible separators. (U+200D, the zero-width joiner, is left
/// alone: emoji sequences need it.)
fn is_format_trick(c: char) -> bool {
    matches!(c,
        '\u{200B}' | '\u{200C}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

/// Whether a character may not appear in a name.
fn is_forbidden(c: char) -> bool {
    c.is_control() || is_format_trick(c)
}

/// Longest name kept, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// A name received from WhatsApp, made harmless: control and bidi characters dropped,
/// runs of white space made one space, trimmed, at most [`MAX_NAME_CHARS`] characters.
pub fn neutralise_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_NAME_CHARS * 4));
    let mut space = false;
    let mut count = 0;
    for c in name.chars() {
        if is_format_trick(c) {
            continue;
        }
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        if count >= MAX_NAME_CHARS {
            break;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// A file name received from outside, made safe to keep and to offer for download:
/// [`neutralise_name`], path separators replaced, no leading dots (no `..`, no hidden
/// files).
pub fn neutralise_file_name(name: &str) -> String {
    let name = neutralise_name(name).replace(['/', '\\', ':'], "_");
    name.trim_start_matches(['.', ' ']).to_owned()
}

/// Checks a name an API caller chose: refused (with the reason, to follow the field name)
/// when it holds control or bidi characters or is longer than [`MAX_NAME_CHARS`].
pub fn check_name(name: &str) -> Result<(), String> {
    if let Some(c) = name.chars().find(|c| is_forbidden(*c)) {
        return Err(format!(
            "must not contain control or text-direction characters (found U+{:04X})",
            c as u32
        ));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_whatsapp_are_neutralised() {
        assert_eq!(neutralise_name("  Ana\u{202E}gpj.exe "), "Anagpj.exe");
        assert_eq!(neutralise_name("a\r\nb\tc\u{0}d"), "a b c d");
        assert_eq!(
            neutralise_name("👨\u{200D}👩\u{200D}👧 family"),
            "👨\u{200D}👩\u{200D}👧 family"
        );
        assert_eq!(
            neutralise_name(&"x".repeat(1000)).chars().count(),
            MAX_NAME_CHARS
        );
        assert_eq!(neutralise_name("\u{2066}\u{2069}"), "");
    }

    #[test]
    fn file_names_cannot_climb_or_hide() {
        assert_eq!(neutralise_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(neutralise_file_name("..\\boot.ini"), "_boot.ini");
        assert_eq!(neutralise_file_name(".bashrc"), "bashrc");
        assert_eq!(
            neutralise_file_name("report\u{202E}fdp.exe"),
            "reportfdp.exe"
        );
        assert_eq!(neutralise_file_name("C:x.txt"), "C_x.txt");
    }

    #[test]
    fn names_from_callers_are_refused_with_a_reason() {
        assert!(check_name("Front desk 2 — Café").is_ok());
        let e = check_name("evil\u{202E}txt").unwrap_err();
        assert!(e.contains("U+202E"), "{e}");
        assert!(check_name("line\nbreak").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
    }
}
