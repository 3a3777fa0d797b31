//! Spintax: `{Hi|Hello} {there|friend}` picks one option per group, groups nest.
//!
//! Literal braces, bars and backslashes are written with a backslash (`\{`, `\}`, `\|`,
//! `\\`); a bar outside any group is plain text. A template is parsed once when the
//! request arrives (a malformed one is the caller's error, never a crash) and expanded
//! once per message, so the text stored is the text sent.

use rand::Rng;
use std::fmt;

/// Deepest nesting accepted: deep enough for any real template, shallow enough that
/// expansion can never exhaust the stack.
pub const MAX_DEPTH: usize = 16;

/// A parsed spintax template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spintax {
    root: Seq,
}

type Seq = Vec<Node>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Choice(Vec<Seq>),
}

/// Why a template is malformed; `position` is a character offset into the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpintaxError {
    #[error("unclosed '{{' at character {position} (write \\{{ for a literal brace)")]
    Unclosed { position: usize },
    #[error("unmatched '}}' at character {position} (write \\}} for a literal brace)")]
    Unmatched { position: usize },
    #[error("spintax nested deeper than {MAX_DEPTH} levels at character {position}")]
    TooDeep { position: usize },
}

impl Spintax {
    pub fn parse(template: &str) -> Result<Self, SpintaxError> {
        let chars: Vec<char> = template.chars().collect();
        let mut pos = 0;
        let root = parse_seq(&chars, &mut pos, 0)?;
        match chars.get(pos) {
            None => Ok(Self { root }),
            Some('}') => Err(SpintaxError::Unmatched { position: pos }),
            // parse_seq at depth 0 stops only at the end or at '}'; a '|' at the top level
            // is text. Reaching here would be a parser bug, reported as unmatched.
            Some(_) => Err(SpintaxError::Unmatched { position: pos }),
        }
    }

    /// Picks one option in every group, uniformly, with the given random source.
    pub fn expand_with<R: Rng + ?Sized>(&self, rng: &mut R) -> String {
        let mut out = String::new();
        expand_seq(&self.root, rng, &mut out);
        out
    }

    /// Picks one option in every group with the thread's random source.
    pub fn expand(&self) -> String {
        self.expand_with(&mut rand::thread_rng())
    }

    /// Whether some choice of options expands to nothing but white space (`{}`, `{|}`,
    /// `{Hi|}`): such a template could send an empty message.
    pub fn can_expand_blank(&self) -> bool {
        fn blank(seq: &Seq) -> bool {
            seq.iter().all(|n| match n {
                Node::Text(t) => t.trim().is_empty(),
                Node::Choice(options) => options.iter().any(blank),
            })
        }
        blank(&self.root)
    }

    /// Whether the template has any group at all (a plain text expands to itself).
    pub fn has_choices(&self) -> bool {
        self.root.iter().any(|n| matches!(n, Node::Choice(_)))
    }
}

impl fmt::Display for Spintax {
    /// Writes the template back in canonical form (escapes normalised).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write_seq(seq: &Seq, f: &mut fmt::Formatter<'_>, in_group: bool) -> fmt::Result {
            for node in seq {
                match node {
                    Node::Text(t) => {
                        for c in t.chars() {
                            if matches!(c, '{' | '}' | '\\') || (in_group && c == '|') {
                                f.write_str("\\")?;
                            }
                            write!(f, "{c}")?;
                        }
                    }
                    Node::Choice(options) => {
                        f.write_str("{")?;
                        for (i, o) in options.iter().enumerate() {
                            if i > 0 {
                                f.write_str("|")?;
                            }
                            write_seq(o, f, true)?;
                        }
                        f.write_str("}")?;
                    }
                }
            }
            Ok(())
        }
        write_seq(&self.root, f, false)
    }
}

fn push_char(seq: &mut Seq, c: char) {
    if let Some(Node::Text(t)) = seq.last_mut() {
        t.push(c);
    } else {
        seq.push(Node::Text(c.to_string()));
    }
}

/// Parses until the end, an unescaped `}` or (inside a group) an unescaped `|`, leaving
/// `pos` on that stop character.
fn parse_seq(chars: &[char], pos: &mut usize, depth: usize) -> Result<Seq, SpintaxError> {
    let mut seq = Seq::new();
    while let Some(&c) = chars.get(*pos) {
        match c {
            '\\' => match chars.get(*pos + 1) {
                Some(&next @ ('{' | '}' | '|' | '\\')) => {
                    push_char(&mut seq, next);
                    *pos += 2;
                }
                // A backslash before anything else is just a backslash.
                _ => {
                    push_char(&mut seq, '\\');
                    *pos += 1;
                }
            },
            '{' => {
                let open = *pos;
                if depth + 1 > MAX_DEPTH {
                    return Err(SpintaxError::TooDeep { position: open });
                }
                *pos += 1;
                let mut options = vec![parse_seq(chars, pos, depth + 1)?];
                loop {
                    match chars.get(*pos) {
                        Some('|') => {
                            *pos += 1;
                            options.push(parse_seq(chars, pos, depth + 1)?);
                        }
                        Some('}') => {
                            *pos += 1;
                            break;
                        }
                        _ => return Err(SpintaxError::Unclosed { position: open }),
                    }
                }
                seq.push(Node::Choice(options));
            }
            '}' => return Ok(seq),
            '|' if depth > 0 => return Ok(seq),
            _ => {
                push_char(&mut seq, c);
                *pos += 1;
            }
        }
    }
    Ok(seq)
}

fn expand_seq<R: Rng + ?Sized>(seq: &Seq, rng: &mut R, out: &mut String) {
    for node in seq {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Choice(options) => {
                // A choice always has at least one option by construction of the parser.
                if let Some(o) = options.get(rng.gen_range(0..options.len().max(1))) {
                    expand_seq(o, rng, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn templates_that_can_expand_to_nothing_are_known() {
        for t in ["{}", "{|}", "{Hi|}", " { | } ", "{{|}|x}"] {
            assert!(Spintax::parse(t).unwrap().can_expand_blank(), "{t}");
        }
        for t in ["Hi", "{Hi|Hello}", "{Hi|} there", "{{a|b}|c}", "\\{\\}"] {
            assert!(!Spintax::parse(t).unwrap().can_expand_blank(), "{t}");
        }
    }

    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    fn outcomes(t: &str) -> HashSet<String> {
        let s = Spintax::parse(t).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..500).map(|_| s.expand_with(&mut rng)).collect()
    }

    #[test]
    fn expands_every_combination_of_groups() {
        let got = outcomes("{Hi|Hello} {there|friend}");
        let want: HashSet<String> = ["Hi there", "Hi friend", "Hello there", "Hello friend"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn nested_groups_and_empty_options() {
        let got = outcomes("{a|{b|c}}{!|}");
        for w in ["a", "a!", "b", "b!", "c", "c!"] {
            assert!(got.contains(w), "missing {w}: {got:?}");
        }
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn escapes_and_bars_outside_groups_are_literal() {
        assert_eq!(
            outcomes(r"use \{braces\} | and \\ and \x"),
            HashSet::from([r"use {braces} | and \ and \x".to_string()])
        );
        assert_eq!(outcomes(r"{a\|b}"), HashSet::from(["a|b".to_string()]));
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert!(!Spintax::parse("Hello from Msgera").unwrap().has_choices());
        assert_eq!(
            outcomes("Hello from Msgera 🚀"),
            HashSet::from(["Hello from Msgera 🚀".to_string()])
        );
    }

    #[test]
    fn malformed_templates_are_errors_with_positions() {
        assert_eq!(
            Spintax::parse("Hi {a|b"),
            Err(SpintaxError::Unclosed { position: 3 })
        );
        assert_eq!(
            Spintax::parse("Hi a}"),
            Err(SpintaxError::Unmatched { position: 4 })
        );
        assert_eq!(
            Spintax::parse("{{a}"),
            Err(SpintaxError::Unclosed { position: 0 })
        );
        let deep = "{".repeat(MAX_DEPTH + 1) + &"}".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            Spintax::parse(&deep),
            Err(SpintaxError::TooDeep { .. })
        ));
        let ok = "{".repeat(MAX_DEPTH) + &"}".repeat(MAX_DEPTH);
        assert!(Spintax::parse(&ok).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics_on_any_input(s in "\\PC{0,200}") {
            if let Ok(t) = Spintax::parse(&s) {
                let _ = t.expand();
            }
        }

        #[test]
        fn braces_heavy_input_never_panics(s in "[{}|\\\\ab]{0,200}") {
            if let Ok(t) = Spintax::parse(&s) {
                let _ = t.expand();
            }
        }

        #[test]
        fn display_round_trips(s in "[{}|\\\\ab]{0,60}") {
            if let Ok(t) = Spintax::parse(&s) {
                prop_assert_eq!(Spintax::parse(&t.to_string()).unwrap(), t);
            }
        }

        #[test]
        fn text_without_special_characters_is_unchanged(s in "[^{}|\\\\]{0,100}") {
            prop_assert_eq!(Spintax::parse(&s).unwrap().expand(), s);
        }
    }
}
