//! What a media file *is*, decided from its bytes, and how it may be served.
//!
//! Whoever sends a file — an API caller uploading it, a server answering a media URL, a
//! stranger messaging a linked number — also declares a MIME type, and that declaration
//! is attacker-controlled: a page declared `text/html` or `image/svg+xml` and served back
//! inline on the dashboard's origin runs script there. So the type is taken from the
//! content ([`detect`]); a declaration only ever *refines* what the bytes already show
//! (codec parameters, a text subtype for bytes that are plain text). How a type may be
//! served is a separate, conservative decision ([`is_inline_safe`]): only plain images,
//! audio and video render in a browser; everything else downloads as an attachment.

/// Text types a declaration may choose for content that is plain UTF-8 text. None of them
/// is rendered as a document by a browser (and every media response is sandboxed anyway).
const PLAIN_TEXT_TYPES: &[&str] = &[
    "text/plain",
    "text/csv",
    "text/tab-separated-values",
    "text/vcard",
    "text/x-vcard",
    "text/calendar",
    "text/markdown",
    "application/json",
];

/// Image types a browser shows as a picture, with no script or document semantics.
/// SVG is deliberately absent: it is a document that can carry script.
const INLINE_IMAGES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/avif",
    "image/heic",
    "image/heif",
];

/// The MIME type of `data`.
///
/// - Recognised by its magic bytes: that type (a declaration of the same type may add
///   parameters, e.g. `audio/ogg; codecs=opus`).
/// - Otherwise, UTF-8 text without control characters: the declared type when it is one
///   of a few inert text types, else `text/plain`.
/// - Otherwise `application/octet-stream`.
pub fn detect(data: &[u8], declared: Option<&str>) -> String {
    let declared = declared.map(str::trim).filter(|d| !d.is_empty());
    let declared_essence = declared.map(essence);
    if let Some(kind) = infer::get(data) {
        let sniffed = kind.mime_type();
        if declared_essence.as_deref() == Some(sniffed)
            && let Some(params) = declared.and_then(safe_parameters)
        {
            return format!("{sniffed}; {params}");
        }
        return sniffed.to_owned();
    }
    if is_plain_text(data) {
        return match declared_essence {
            Some(d) if PLAIN_TEXT_TYPES.contains(&d.as_str()) => d,
            _ => "text/plain".to_owned(),
        };
    }
    "application/octet-stream".to_owned()
}

/// Whether a file of this type may be shown inline by a browser: plain images, audio and
/// video. Everything else (HTML, SVG, XML, PDF, text, archives, unknown) is served as an
/// attachment.
pub fn is_inline_safe(mime: &str) -> bool {
    let e = essence(mime);
    INLINE_IMAGES.contains(&e.as_str())
        || (e.starts_with("audio/") && is_token_type(&e))
        || (e.starts_with("video/") && is_token_type(&e))
}

/// `type/subtype` in lower case, parameters dropped.
fn essence(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `type/subtype` made only of the characters MIME tokens use.
fn is_token_type(e: &str) -> bool {
    e.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'+' | b'-'))
}

/// The parameters of a declared type when they are the harmless kind codecs use
/// (`codecs=opus`), normalised; anything else is dropped.
fn safe_parameters(declared: &str) -> Option<String> {
    let mut out = Vec::new();
    for p in declared.split(';').skip(1) {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (k, v) = p.split_once('=')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
        if k != "codecs"
            || v.is_empty()
            || v.len() > 32
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        {
            return None;
        }
        out.push(format!("{k}={}", v.to_ascii_lowercase()));
    }
    (!out.is_empty()).then(|| out.join("; "))
}

/// UTF-8 with no control characters other than tab, newline, carriage return and form
/// feed (so binary data and most malformed content are not called text). `data` may be
/// only the start of a file: a character cut in two at its end does not count against it.
fn is_plain_text(data: &[u8]) -> bool {
    let text = match std::str::from_utf8(data) {
        Ok(s) => s,
        // Only an incomplete sequence at the very end (`error_len` is `None`).
        Err(e) if e.error_len().is_none() && data.len() - e.valid_up_to() < 4 => {
            std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R',
    ];
    const OGG: &[u8] = b"OggS\0\x02\0\0\0\0\0\0\0\0";

    #[test]
    fn the_bytes_decide_not_the_declaration() {
        assert_eq!(detect(PNG, Some("application/pdf")), "image/png");
        assert_eq!(detect(PNG, Some("text/html")), "image/png");
        assert_eq!(detect(PNG, None), "image/png");
        let page = b"<!DOCTYPE html><html><script>alert(1)</script></html>";
        assert_eq!(detect(page, Some("image/jpeg")), "text/html");
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>";
        assert_eq!(detect(svg, Some("image/svg+xml")), "text/plain");
        assert_eq!(detect(b"a,b\n1,2\n", Some("text/csv")), "text/csv");
        assert_eq!(detect(b"just text", Some("text/html")), "text/plain");
        assert_eq!(detect(b"just text", None), "text/plain");
        // The first bytes of a longer file may end inside a character.
        assert_eq!(
            detect(&"résumé".as_bytes()[..2], Some("text/csv")),
            "text/csv"
        );
        assert_eq!(
            detect(&[0u8, 1, 2, 3, 0xff], Some("image/png")),
            "application/octet-stream"
        );
    }

    #[test]
    fn a_matching_declaration_keeps_only_codec_parameters() {
        assert_eq!(
            detect(OGG, Some("audio/ogg; codecs=opus")),
            "audio/ogg; codecs=opus"
        );
        assert_eq!(
            detect(OGG, Some("audio/ogg; codecs=\"OPUS\"")),
            "audio/ogg; codecs=opus"
        );
        assert_eq!(
            detect(OGG, Some("audio/ogg; charset=x\r\nX: y")),
            "audio/ogg"
        );
        assert_eq!(detect(OGG, Some("video/mp4; codecs=opus")), "audio/ogg");
    }

    #[test]
    fn only_plain_media_renders_inline() {
        for t in [
            "image/png",
            "image/jpeg",
            "audio/ogg; codecs=opus",
            "video/mp4",
        ] {
            assert!(is_inline_safe(t), "{t}");
        }
        for t in [
            "text/html",
            "image/svg+xml",
            "text/xml",
            "application/xhtml+xml",
            "application/pdf",
            "text/plain",
            "application/octet-stream",
            "video/<script>",
        ] {
            assert!(!is_inline_safe(t), "{t}");
        }
    }
}
