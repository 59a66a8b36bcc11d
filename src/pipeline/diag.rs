//! Compiler diagnostics: `file:line:col: message`, the line, a caret span.

use std::fmt;

/// A byte range in the pipeline text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// An error in a pipeline, located by span.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub span: Span,
    pub message: String,
    /// A fix to suggest, e.g. "did you mean `price`?".
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Locates the diagnostic in `src` (which starts on line
    /// `first_line + 1` of `origin`).
    pub fn locate<'a>(&'a self, origin: &'a str, src: &'a str, first_line: usize) -> Located<'a> {
        Located {
            diag: self,
            origin,
            src,
            first_line,
        }
    }
}

/// A diagnostic with its source, ready to print.
pub struct Located<'a> {
    diag: &'a Diagnostic,
    origin: &'a str,
    src: &'a str,
    first_line: usize,
}

impl Located<'_> {
    /// 1-based line and column in the origin file.
    pub fn line_col(&self) -> (usize, usize) {
        let mut start = self.diag.span.start.min(self.src.len());
        while !self.src.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.src[..start];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1);
        let col = self.src[start - col..start].chars().count() + 1;
        (line + self.first_line, col)
    }

    /// The one-line form: `file:line:col: message`.
    pub fn headline(&self) -> String {
        let (l, c) = self.line_col();
        let mut s = format!("{}:{l}:{c}: {}", self.origin, self.diag.message);
        if let Some(h) = &self.diag.help {
            s.push_str("; ");
            s.push_str(h);
        }
        s
    }
}

impl fmt::Display for Located<'_> {
    /// The headline, then the source line with the span underlined.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        let mut start = self.diag.span.start.min(self.src.len());
        while !self.src.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = self.src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.src[start..]
            .find('\n')
            .map_or(self.src.len(), |i| start + i);
        let line = &self.src[line_start..line_end];
        let (l, c) = self.line_col();
        let gutter = l.to_string().len();
        // Spans are byte ranges; never cut a character in two.
        let mut end = self.diag.span.end.clamp(start, line_end);
        while !self.src.is_char_boundary(end) {
            end += 1;
        }
        let width = self.src[start..end].chars().count().max(1);
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{l} | {line}")?;
        write!(
            f,
            "{:gutter$} | {}{}",
            "",
            " ".repeat(c - 1),
            "^".repeat(width)
        )
    }
}

/// The candidate closest to `name` by edit distance, if close enough to be
/// a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance (transpositions count once).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_and_caret() {
        let src = "filter a > 1\n| eval x = prcie * 2\n";
        let d = Diagnostic::new(Span::new(24, 29), "unknown field `prcie`")
            .with_help("did you mean `price`?");
        let l = d.locate("p.mts", src, 0);
        assert_eq!(
            l.headline(),
            "p.mts:2:12: unknown field `prcie`; did you mean `price`?"
        );
        let text = l.to_string();
        assert!(
            text.ends_with("2 | | eval x = prcie * 2\n  |            ^^^^^"),
            "{text}"
        );
        assert_eq!(d.locate("c.toml", src, 10).line_col(), (12, 12));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("prcie", ["price", "qty"]), Some("price"));
        assert_eq!(suggest("sybmol", ["symbol", "seq"]), Some("symbol"));
        assert_eq!(suggest("zzz", ["price"]), None);
    }
}
