//! The one rule for the characters of an id (a conversation, message or user
//! id), shared by canonical JSON — so `courier produce` — and the gateway.
//!
//! An id is compared byte for byte but read by people: two ids that look the
//! same must be the same id. So an id holds no character that is invisible or
//! changes how the text around it is shown: whitespace, controls (Unicode
//! category Cc), format characters (Cf: zero-width spaces and joiners, the
//! bidirectional overrides and isolates, the byte order mark, ...), the other
//! default-ignorable code points (variation selectors, Hangul fillers, the
//! combining grapheme joiner, tags), private-use characters and
//! noncharacters. With them `bob\u{200B}` looks like `bob`, and `\u{202E}bob`
//! shows as another id.

/// Ranges of code points (inclusive) that are Cf or otherwise default-ignorable
/// or invisible, beyond what `char::is_whitespace` and `char::is_control` cover.
/// From the Unicode Character Database (DerivedGeneralCategory: Cf;
/// DerivedCoreProperties: Default_Ignorable_Code_Point), Unicode 16.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),    // soft hyphen
    (0x034F, 0x034F),    // combining grapheme joiner
    (0x0600, 0x0605),    // Arabic number signs (Cf)
    (0x061C, 0x061C),    // Arabic letter mark
    (0x06DD, 0x06DD),    // Arabic end of ayah (Cf)
    (0x070F, 0x070F),    // Syriac abbreviation mark (Cf)
    (0x0890, 0x0891),    // Arabic pound/piastre mark above (Cf)
    (0x08E2, 0x08E2),    // Arabic disputed end of ayah (Cf)
    (0x115F, 0x1160),    // Hangul choseong/jungseong fillers
    (0x17B4, 0x17B5),    // Khmer inherent vowels
    (0x180B, 0x180F),    // Mongolian free variation selectors, vowel separator
    (0x200B, 0x200F),    // zero-width space, ZWNJ, ZWJ, LRM, RLM
    (0x202A, 0x202E),    // bidirectional embeddings and overrides
    (0x2060, 0x206F),    // word joiner, invisible operators, bidi isolates
    (0x2800, 0x2800),    // braille pattern blank (shows as a space)
    (0x3164, 0x3164),    // Hangul filler
    (0xFDD0, 0xFDEF),    // noncharacters
    (0xFE00, 0xFE0F),    // variation selectors
    (0xFEFF, 0xFEFF),    // zero-width no-break space (byte order mark)
    (0xFFA0, 0xFFA0),    // halfwidth Hangul filler
    (0xFFF0, 0xFFFB),    // unassigned specials, interlinear annotation (Cf)
    (0x110BD, 0x110BD),  // Kaithi number sign (Cf)
    (0x110CD, 0x110CD),  // Kaithi number sign above (Cf)
    (0x13430, 0x1343F),  // Egyptian hieroglyph format controls (Cf)
    (0x1BCA0, 0x1BCA3),  // shorthand format controls (Cf)
    (0x1D173, 0x1D17A),  // musical symbol format controls (Cf)
    (0xE0000, 0xE0FFF),  // tags, variation selectors supplement
    (0xE000, 0xF8FF),    // private use
    (0xF0000, 0x10FFFF), // supplementary private use planes
];

/// Whether `c` may not appear in an id (see the module doc).
pub fn forbidden(c: char) -> bool {
    let n = c as u32;
    c.is_whitespace()
        || c.is_control()
        // Noncharacters U+xFFFE and U+xFFFF of every plane.
        || n & 0xFFFE == 0xFFFE
        || INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

/// The first forbidden character of `id`, if any, written `U+200B` (an
/// invisible character cannot be shown as itself in an error message).
pub fn first_forbidden(id: &str) -> Option<String> {
    id.chars()
        .find(|c| forbidden(*c))
        .map(|c| format!("U+{:04X}", c as u32))
}

/// What a refused id is told: why, naming the character.
pub fn explain(found: &str) -> String {
    format!(
        "contains {found}; ids may not contain whitespace, control characters, or invisible \
         or formatting characters (zero-width, bidirectional controls, variation selectors, \
         private use)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_formatting_characters_are_forbidden_and_named() {
        for bad in [
            "bob\u{200B}",
            "\u{202E}bob",
            "b\u{2066}ob",
            "bob\u{FEFF}",
            "bo\u{AD}b",
            "bob\u{FE0F}",
            "\u{3164}",
            "bob\u{E0041}",
            "bob\u{E000}",
            "a b",
            "a\u{A0}b",
            "a\tb",
            "a\u{7}b",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{FFFF}",
        ] {
            assert!(first_forbidden(bad).is_some(), "{bad:?}");
        }
        assert_eq!(first_forbidden("bob\u{200B}").as_deref(), Some("U+200B"));
        assert_eq!(first_forbidden("\u{202E}x").as_deref(), Some("U+202E"));
        for fine in [
            "bob",
            "u-1",
            "c_7.x",
            "élodie",
            "李雷",
            "😀",
            "user@example.org",
            "a/b",
        ] {
            assert_eq!(first_forbidden(fine), None, "{fine:?}");
        }
    }
}
