//! What Meta accepts as an uploaded media file: [`MediaType`] is a MIME type Meta supports for
//! one [`MediaKind`], normalized the way Meta wants it declared, with that kind's size limit.
//!
//! Meta's table ("supported media types"): audio aac/amr/mp3/m4a/ogg-opus 16 MB; document
//! txt/pdf/office 100 MB; image jpeg/png 5 MB; sticker webp 100 KB static, 500 KB animated;
//! video mp4/3gp 16 MB. Megabytes here are MiB (Meta's own checks are not documented to the
//! byte; the larger reading lets Meta, not us, refuse a file at the edge of its limit). Two
//! normalizations spare users Meta's 131053 errors: `audio/opus` and `audio/ogg` are declared
//! `audio/ogg; codecs=opus` (the only OGG Meta takes), and `image/jpg` is `image/jpeg`. A WebP is
//! a sticker (Meta refuses WebP images); whether it is animated is read from its first bytes
//! ([`sticker_limit`]).

use std::fmt;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// The kinds of media Meta holds, by what they can be sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `audio` (and `voice`, when OGG/OPUS).
    Audio,
    /// `document`.
    Document,
    /// `image`.
    Image,
    /// `sticker` (WebP).
    Sticker,
    /// `video`.
    Video,
}

impl MediaKind {
    /// The kind's name, as the message type it is sent with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Image => "image",
            Self::Sticker => "sticker",
            Self::Video => "video",
        }
    }

    /// Meta's size limit for the kind, in bytes (for a sticker, an animated one's; see
    /// [`sticker_limit`]).
    pub fn max_bytes(self) -> u64 {
        match self {
            Self::Audio | Self::Video => 16 * MIB,
            Self::Document => 100 * MIB,
            Self::Image => 5 * MIB,
            Self::Sticker => STICKER_ANIMATED_MAX,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest static sticker.
pub const STICKER_STATIC_MAX: u64 = 100 * KIB;
/// Largest animated sticker.
pub const STICKER_ANIMATED_MAX: u64 = 500 * KIB;

/// Every MIME type Meta takes, its kind, and the file extensions that imply it.
const TYPES: &[(&str, MediaKind, &[&str])] = &[
    ("audio/aac", MediaKind::Audio, &["aac"]),
    ("audio/amr", MediaKind::Audio, &["amr"]),
    ("audio/mpeg", MediaKind::Audio, &["mp3"]),
    ("audio/mp4", MediaKind::Audio, &["m4a"]),
    (
        "audio/ogg; codecs=opus",
        MediaKind::Audio,
        &["ogg", "opus", "oga"],
    ),
    ("text/plain", MediaKind::Document, &["txt"]),
    ("application/pdf", MediaKind::Document, &["pdf"]),
    (
        "application/vnd.ms-powerpoint",
        MediaKind::Document,
        &["ppt"],
    ),
    ("application/msword", MediaKind::Document, &["doc"]),
    ("application/vnd.ms-excel", MediaKind::Document, &["xls"]),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        MediaKind::Document,
        &["docx"],
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        MediaKind::Document,
        &["pptx"],
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        MediaKind::Document,
        &["xlsx"],
    ),
    ("image/jpeg", MediaKind::Image, &["jpg", "jpeg"]),
    ("image/png", MediaKind::Image, &["png"]),
    ("image/webp", MediaKind::Sticker, &["webp"]),
    ("video/mp4", MediaKind::Video, &["mp4"]),
    ("video/3gpp", MediaKind::Video, &["3gp", "3gpp"]),
];

/// A MIME type Meta accepts for upload, normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType {
    mime: &'static str,
    kind: MediaKind,
    /// The type's usual file extension (the first of its row in [`TYPES`]).
    extension: &'static str,
}

/// Why a file's type is not one Meta takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedType {
    /// What was declared (or "" when nothing was and the name did not tell).
    pub declared: String,
}

impl fmt::Display for UnsupportedType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.declared.chars().take(80).collect();
        if shown.is_empty() {
            f.write_str("the file's type is not declared and its name has no known extension")?;
        } else {
            write!(f, "{shown:?} is not a media type WhatsApp accepts")?;
        }
        f.write_str("; declare one of: ")?;
        for (i, (mime, kind, _)) in TYPES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{mime} ({kind})")?;
        }
        f.write_str(" (WebP images are sent as stickers: convert photos to JPEG or PNG)")
    }
}

impl std::error::Error for UnsupportedType {}

/// A Content-Type's essence: the type without parameters, trimmed, in lowercase
/// (`Image/PNG; q=1` -> `image/png`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

impl MediaType {
    /// The type of a file declared as `declared` (a Content-Type, parameters allowed) named
    /// `filename`: the declared type when there is one other than `application/octet-stream`,
    /// else the one the file name's extension implies.
    pub fn parse(declared: Option<&str>, filename: Option<&str>) -> Result<Self, UnsupportedType> {
        let declared = declared.map(str::trim).filter(|d| !d.is_empty());
        match declared.map(essence).as_deref() {
            None | Some("application/octet-stream") => {
                let extension = filename
                    .and_then(|n| n.rsplit_once('.'))
                    .map(|(_, ext)| ext.to_ascii_lowercase());
                extension
                    .as_deref()
                    .and_then(|ext| TYPES.iter().find(|(_, _, exts)| exts.contains(&ext)))
                    .map(Self::of)
                    .ok_or_else(|| UnsupportedType {
                        declared: declared.unwrap_or_default().to_owned(),
                    })
            }
            Some(essence) => {
                let essence = match essence {
                    "image/jpg" => "image/jpeg",
                    "audio/opus" | "audio/ogg" => "audio/ogg; codecs=opus",
                    "audio/mp3" => "audio/mpeg",
                    "audio/x-m4a" | "audio/m4a" => "audio/mp4",
                    other => other,
                };
                TYPES
                    .iter()
                    .find(|(mime, _, _)| *mime == essence)
                    .map(Self::of)
                    .ok_or_else(|| UnsupportedType {
                        declared: declared.unwrap_or_default().to_owned(),
                    })
            }
        }
    }

    /// The type of a row of [`TYPES`].
    fn of(&(mime, kind, extensions): &(&'static str, MediaKind, &'static [&'static str])) -> Self {
        Self {
            mime,
            kind,
            extension: extensions[0],
        }
    }

    /// The type's usual file extension, e.g. `docx`, `mp3`, `ogg`.
    pub fn extension(self) -> &'static str {
        self.extension
    }

    /// The MIME type as Meta wants it declared.
    pub fn mime(self) -> &'static str {
        self.mime
    }

    /// What the file can be sent as.
    pub fn kind(self) -> MediaKind {
        self.kind
    }
}

/// The size limit of a WebP sticker whose file starts with `head` (at least its first 21 bytes,
/// else the animated limit): 100 KB unless the extended header (`VP8X`) says it is animated.
pub fn sticker_limit(head: &[u8]) -> u64 {
    let webp = head.len() >= 21 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP";
    if !webp {
        return STICKER_ANIMATED_MAX;
    }
    // VP8X's flags byte: bit 1 is "animation".
    let animated = &head[12..16] == b"VP8X" && head[20] & 0x02 != 0;
    if animated {
        STICKER_ANIMATED_MAX
    } else {
        STICKER_STATIC_MAX
    }
}

/// A byte count for people: "5 MiB", "100 KiB", "1234 bytes".
pub fn human_bytes(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_are_normalized_and_classified() {
        let t = |d: &str| MediaType::parse(Some(d), None).map(|t| (t.mime(), t.kind()));
        assert_eq!(t("image/jpeg"), Ok(("image/jpeg", MediaKind::Image)));
        assert_eq!(t("IMAGE/JPG"), Ok(("image/jpeg", MediaKind::Image)));
        assert_eq!(
            t("audio/ogg"),
            Ok(("audio/ogg; codecs=opus", MediaKind::Audio))
        );
        assert_eq!(
            t("audio/opus"),
            Ok(("audio/ogg; codecs=opus", MediaKind::Audio))
        );
        assert_eq!(
            t("audio/ogg; codecs=opus"),
            Ok(("audio/ogg; codecs=opus", MediaKind::Audio))
        );
        assert_eq!(t("audio/mp3"), Ok(("audio/mpeg", MediaKind::Audio)));
        assert_eq!(t("image/webp"), Ok(("image/webp", MediaKind::Sticker)));
        assert_eq!(t("video/3gpp"), Ok(("video/3gpp", MediaKind::Video)));
        assert_eq!(
            t("application/pdf; name=x.pdf"),
            Ok(("application/pdf", MediaKind::Document))
        );
        assert!(t("image/gif").is_err());
        assert!(t("audio/webm").is_err());
        assert!(t("application/zip").is_err());
    }

    #[test]
    fn an_undeclared_or_generic_type_is_taken_from_the_extension() {
        let t = |d: Option<&str>, n: &str| MediaType::parse(d, Some(n)).map(|t| t.mime());
        assert_eq!(t(None, "photo.JPG"), Ok("image/jpeg"));
        assert_eq!(
            t(Some("application/octet-stream"), "report.xlsx"),
            Ok("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        );
        assert_eq!(t(None, "note.opus"), Ok("audio/ogg; codecs=opus"));
        assert!(t(None, "archive.zip").is_err());
        assert!(t(None, "README").is_err());
        // A declared type wins over the name.
        assert_eq!(t(Some("application/pdf"), "x.jpg"), Ok("application/pdf"));
    }

    #[test]
    fn the_refusal_names_what_was_declared_and_what_is_accepted() {
        let e = MediaType::parse(Some("image/gif"), None).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("\"image/gif\" is not a media type"),
            "{text}"
        );
        assert!(text.contains("image/jpeg (image)"), "{text}");
        assert!(text.contains("application/pdf (document)"), "{text}");
        let e = MediaType::parse(None, Some("x")).unwrap_err();
        assert!(e.to_string().starts_with("the file's type is not declared"));
    }

    #[test]
    fn each_type_has_its_usual_extension() {
        let ext = |d: &str| MediaType::parse(Some(d), None).unwrap().extension();
        assert_eq!(ext("audio/mpeg"), "mp3");
        assert_eq!(ext("audio/opus"), "ogg");
        assert_eq!(ext("text/plain"), "txt");
        assert_eq!(
            ext("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            "docx"
        );
        assert_eq!(ext("image/jpeg"), "jpg");
    }

    #[test]
    fn every_type_is_a_valid_mime_type() {
        // The Graph client declares them through reqwest, which must parse every one.
        for (mime, _, _) in TYPES {
            assert!(
                reqwest::multipart::Part::text("").mime_str(mime).is_ok(),
                "{mime}"
            );
        }
    }

    #[test]
    fn limits_follow_metas_table() {
        assert_eq!(MediaKind::Image.max_bytes(), 5 * 1024 * 1024);
        assert_eq!(MediaKind::Document.max_bytes(), 100 * 1024 * 1024);
        assert_eq!(MediaKind::Audio.max_bytes(), 16 * 1024 * 1024);
        assert_eq!(MediaKind::Video.max_bytes(), 16 * 1024 * 1024);
        assert_eq!(MediaKind::Sticker.max_bytes(), 500 * 1024);
        assert_eq!(human_bytes(5 * 1024 * 1024), "5 MiB");
        assert_eq!(human_bytes(100 * 1024), "100 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }

    #[test]
    fn a_sticker_is_static_unless_its_extended_header_says_animated() {
        let mut head = Vec::new();
        head.extend_from_slice(b"RIFF\x10\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00");
        head.push(0x00); // flags
        head.extend_from_slice(&[0; 9]);
        assert_eq!(sticker_limit(&head), STICKER_STATIC_MAX);
        head[20] = 0x02;
        assert_eq!(sticker_limit(&head), STICKER_ANIMATED_MAX);
        let simple = b"RIFF\x10\x00\x00\x00WEBPVP8 \x0a\x00\x00\x00\x00\x00";
        assert_eq!(sticker_limit(simple), STICKER_STATIC_MAX);
        assert_eq!(sticker_limit(b"RIFF"), STICKER_ANIMATED_MAX);
    }
}
