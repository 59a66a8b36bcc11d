//! Tokens of the `.mts` language, each with its byte span.
//!
//! Newlines are whitespace except for one thing: a token records whether it
//! is the first on its line, because a label (`name:`) at the start of a
//! line begins a new stage even without `|`.

use super::diag::{Diagnostic, Span};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A name: a field, label, sink, function or a keyword.
    Ident(String),
    /// A name in backticks: always a field, never a keyword.
    Quoted(String),
    /// `$name`
    Param(String),
    /// `@name`
    Table(String),
    Int(u64),
    Float(f64),
    /// A duration literal in ns (`250ms`, `1s`).
    Duration(i64),
    Str(String),
    Pipe,
    Comma,
    Colon,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Assign,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eof,
}

impl Tok {
    /// How the token is shown in "expected X, found Y".
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Quoted(s) => format!("`{s}`"),
            Tok::Param(s) => format!("`${s}`"),
            Tok::Table(s) => format!("`@{s}`"),
            Tok::Int(v) => format!("`{v}`"),
            Tok::Float(v) => format!("`{v}`"),
            Tok::Duration(_) => "a duration".into(),
            Tok::Str(_) => "a string".into(),
            Tok::Pipe => "`|`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Colon => "`:`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Assign => "`=`".into(),
            Tok::Eq => "`==`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::Percent => "`%`".into(),
            Tok::Eof => "the end of the pipeline".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
    /// First token on its line.
    pub line_start: bool,
}

/// Words that cannot be used as bare names (use backticks for a field).
pub const KEYWORDS: &[&str] = &[
    "filter", "eval", "select", "drop", "rename", "enrich", "dedup", "sample", "window", "route",
    "tee", "to", "on", "within", "in", "per", "by", "every", "emit", "lateness", "when", "as",
    "and", "or", "not", "true", "false", "null",
];

pub fn is_keyword(s: &str) -> bool {
    KEYWORDS.contains(&s)
}

fn duration_unit(s: &str) -> Option<i64> {
    Some(match s {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Splits `src` into tokens, ending with `Tok::Eof`.
///
/// # Errors
/// The first malformed token, with its span.
pub fn lex(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        let start = i;
        let tok = match c {
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' => {
                i += 1;
                Tok::Colon
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'[' => {
                i += 1;
                Tok::LBracket
            }
            b']' => {
                i += 1;
                Tok::RBracket
            }
            b'+' => {
                i += 1;
                Tok::Plus
            }
            b'-' => {
                i += 1;
                Tok::Minus
            }
            b'*' => {
                i += 1;
                Tok::Star
            }
            b'/' => {
                i += 1;
                Tok::Slash
            }
            b'%' => {
                i += 1;
                Tok::Percent
            }
            b'=' => {
                if b.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Eq
                } else {
                    i += 1;
                    Tok::Assign
                }
            }
            b'!' => {
                if b.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Ne
                } else {
                    return Err(Diagnostic::new(
                        Span::new(i, i + 1),
                        "unexpected `!`; use `not` for negation or `!=` for inequality",
                    ));
                }
            }
            b'<' => {
                if b.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Le
                } else {
                    i += 1;
                    Tok::Lt
                }
            }
            b'>' => {
                if b.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Ge
                } else {
                    i += 1;
                    Tok::Gt
                }
            }
            b'$' | b'@' => {
                i += 1;
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if s == i {
                    let what = if c == b'$' {
                        "a parameter name"
                    } else {
                        "a table name"
                    };
                    return Err(Diagnostic::new(
                        Span::new(start, i),
                        format!("expected {what} after `{}`", c as char),
                    ));
                }
                let name = src[s..i].to_string();
                if c == b'$' {
                    Tok::Param(name)
                } else {
                    Tok::Table(name)
                }
            }
            b'`' => {
                i += 1;
                let s = i;
                while i < b.len() && b[i] != b'`' && b[i] != b'\n' {
                    i += 1;
                }
                if i >= b.len() || b[i] != b'`' {
                    return Err(Diagnostic::new(
                        Span::new(start, i),
                        "unterminated backtick name",
                    ));
                }
                let name = src[s..i].to_string();
                i += 1;
                if name.is_empty() {
                    return Err(Diagnostic::new(Span::new(start, i), "empty backtick name"));
                }
                Tok::Quoted(name)
            }
            b'"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&c) = b.get(i) else {
                        return Err(Diagnostic::new(Span::new(start, i), "unterminated string"));
                    };
                    match c {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\n' => {
                            return Err(Diagnostic::new(
                                Span::new(start, i),
                                "unterminated string (strings end on their line; write \\n for a newline)",
                            ));
                        }
                        b'\\' => {
                            let e = b.get(i + 1).copied();
                            let ch = match e {
                                Some(b'"') => '"',
                                Some(b'\\') => '\\',
                                Some(b'n') => '\n',
                                Some(b't') => '\t',
                                Some(b'r') => '\r',
                                _ => {
                                    return Err(Diagnostic::new(
                                        Span::new(
                                            i,
                                            i + 1
                                                + src[i + 1..]
                                                    .chars()
                                                    .next()
                                                    .map_or(0, char::len_utf8),
                                        ),
                                        "unknown escape; use \\\" \\\\ \\n \\t or \\r",
                                    ));
                                }
                            };
                            s.push(ch);
                            i += 2;
                        }
                        _ => {
                            let ch = src[i..].chars().next().expect("in bounds");
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                Tok::Str(s)
            }
            b'0'..=b'9' | b'.' if c != b'.' || b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                let (tok, end) = number(src, i)?;
                i = end;
                tok
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Ident(src[start..i].to_string())
            }
            _ => {
                let ch = src[i..].chars().next().expect("in bounds");
                return Err(Diagnostic::new(
                    Span::new(i, i + ch.len_utf8()),
                    format!("unexpected character {ch:?}"),
                ));
            }
        };
        out.push(Token {
            tok,
            span: Span::new(start, i),
            line_start,
        });
        line_start = false;
    }
    out.push(Token {
        tok: Tok::Eof,
        span: Span::new(b.len(), b.len()),
        line_start: true,
    });
    Ok(out)
}

fn number(src: &str, start: usize) -> Result<(Tok, usize), Diagnostic> {
    let b = src.as_bytes();
    let mut i = start;
    let mut is_float = false;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
        is_float = true;
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            is_float = true;
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let text: String = src[start..i].chars().filter(|&c| c != '_').collect();
    // A unit right after an integer makes a duration: `250ms`.
    let u_start = i;
    while i < b.len() && b[i].is_ascii_alphabetic() {
        i += 1;
    }
    let span = Span::new(start, i);
    if u_start != i {
        let unit = &src[u_start..i];
        let Some(mul) = duration_unit(unit) else {
            return Err(Diagnostic::new(
                span,
                format!("unknown unit `{unit}` (durations: ns, us, ms, s, m, h)"),
            ));
        };
        if is_float {
            return Err(Diagnostic::new(
                span,
                "a duration needs a whole number, e.g. `1500ms`",
            ));
        }
        let n: i64 = text
            .parse()
            .map_err(|_| Diagnostic::new(span, "duration out of range"))?;
        let ns = n
            .checked_mul(mul)
            .ok_or_else(|| Diagnostic::new(span, "duration out of range"))?;
        return Ok((Tok::Duration(ns), i));
    }
    if is_float {
        let v: f64 = text
            .parse()
            .map_err(|_| Diagnostic::new(span, "invalid number"))?;
        Ok((Tok::Float(v), i))
    } else {
        let v: u64 = text
            .parse()
            .map_err(|_| Diagnostic::new(span, "integer literal out of range"))?;
        Ok((Tok::Int(v), i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn literals() {
        assert_eq!(
            toks("12 1.5e6 1_000 \"s\\n\" 250ms 1s .5"),
            [
                Tok::Int(12),
                Tok::Float(1.5e6),
                Tok::Int(1000),
                Tok::Str("s\n".into()),
                Tok::Duration(250_000_000),
                Tok::Duration(1_000_000_000),
                Tok::Float(0.5),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn names_and_operators() {
        assert_eq!(
            toks("a>=$p and `window` in @t # c\n|x!=1"),
            [
                Tok::Ident("a".into()),
                Tok::Ge,
                Tok::Param("p".into()),
                Tok::Ident("and".into()),
                Tok::Quoted("window".into()),
                Tok::Ident("in".into()),
                Tok::Table("t".into()),
                Tok::Pipe,
                Tok::Ident("x".into()),
                Tok::Ne,
                Tok::Int(1),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn line_starts() {
        let t = lex("a: b\n  c: d").unwrap();
        let starts: Vec<bool> = t.iter().map(|t| t.line_start).collect();
        assert_eq!(starts, [true, false, false, true, false, false, true]);
    }

    #[test]
    fn errors_have_spans() {
        let e = lex("x = \"abc").unwrap_err();
        assert_eq!(e.span, Span::new(4, 8));
        let e = lex("5parsecs").unwrap_err();
        assert!(e.message.contains("unknown unit `parsecs`"));
        assert!(lex("a ! b").unwrap_err().message.contains("use `not`"));
    }
}
