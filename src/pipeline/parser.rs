//! Recursive-descent parser for the whole `.mts` grammar (SPEC §4).
//!
//! ```text
//! pipeline = stage { ( "|" | NEWLINE label-ahead ) stage } ;
//! stage    = [ IDENT ":" ] op ;
//! ```
//! Expressions use precedence climbing: `or` < `and` < `not` < comparison
//! and `in` < `+ -` < `* / %` < unary `-` < primary. Comparisons do not
//! chain (`a < b < c` is an error).

use super::ast::*;
use super::diag::{Diagnostic, Span};
use super::lexer::{Tok, Token, is_keyword, lex};

/// Parses pipeline text.
///
/// # Errors
/// The first syntax error, located.
pub fn parse(src: &str) -> Result<Pipeline, Diagnostic> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0, src };
    p.pipeline()
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    src: &'a str,
}

type R<T> = Result<T, Diagnostic>;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        let i = (self.pos + n).min(self.toks.len() - 1);
        &self.toks[i].tok
    }

    fn span(&self) -> Span {
        self.toks[self.pos].span
    }

    fn prev_span(&self) -> Span {
        self.toks[self.pos.saturating_sub(1)].span
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.at_word(w) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, expected: &str) -> Diagnostic {
        Diagnostic::new(
            self.span(),
            format!("expected {expected}, found {}", self.peek().describe()),
        )
    }

    fn expect(&mut self, t: &Tok, expected: &str) -> R<Span> {
        if self.peek() == t {
            Ok(self.bump().span)
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn expect_word(&mut self, w: &str) -> R<Span> {
        if self.at_word(w) {
            Ok(self.bump().span)
        } else {
            Err(self.unexpected(&format!("`{w}`")))
        }
    }

    /// A label ahead: `IDENT :` where IDENT is not a keyword.
    fn label_ahead(&self) -> bool {
        matches!(self.peek(), Tok::Ident(s) if !is_keyword(s)) && *self.peek_at(1) == Tok::Colon
    }

    /// True where the current stage ends: `|`, end of input, or a label at
    /// the start of a line.
    fn at_stage_end(&self) -> bool {
        matches!(self.peek(), Tok::Pipe | Tok::Eof)
            || (self.toks[self.pos].line_start && self.label_ahead())
    }

    fn pipeline(&mut self) -> R<Pipeline> {
        let mut stages: Vec<Stage> = Vec::new();
        if *self.peek() == Tok::Eof {
            return Err(Diagnostic::new(
                self.span(),
                "the pipeline is empty; it needs at least `to SINK`",
            ));
        }
        loop {
            let stage = self.stage(stages.len() + 1)?;
            stages.push(stage);
            match self.peek() {
                Tok::Eof => break,
                Tok::Pipe => {
                    self.bump();
                }
                _ if self.toks[self.pos].line_start && self.label_ahead() => {}
                _ => return Err(self.unexpected("`|` or a new stage")),
            }
        }
        // Labels are unique, and never the automatic name of another stage.
        for (j, t) in stages.iter().enumerate() {
            if let Some((i, s)) = stages[..j]
                .iter()
                .enumerate()
                .find(|(_, s)| s.name == t.name)
            {
                let d = if s.labelled && t.labelled {
                    Diagnostic::new(t.span, format!("stage name `{}` is used twice", t.name))
                } else {
                    let (label, auto) = if s.labelled { (s, j) } else { (t, i) };
                    Diagnostic::new(
                        label.span,
                        format!(
                            "label `{}` is also the automatic name of stage {}; choose another label",
                            label.name,
                            auto + 1
                        ),
                    )
                };
                return Err(d);
            }
        }
        Ok(Pipeline { stages })
    }

    fn stage(&mut self, position: usize) -> R<Stage> {
        let start = self.span();
        let mut label = None;
        if self.label_ahead() {
            let t = self.bump();
            self.bump();
            if let Tok::Ident(s) = t.tok {
                label = Some(s);
            }
        } else if let (Tok::Ident(s), Tok::Colon) = (self.peek(), self.peek_at(1)) {
            return Err(Diagnostic::new(
                self.span(),
                format!("`{s}` is a keyword and cannot be a label"),
            ));
        }
        let op_tok = self.pos;
        let op = self.op()?;
        let end = self.prev_span();
        if !self.at_stage_end() {
            return Err(self.unexpected("the end of the stage (`|` or a new line with a label)"));
        }
        // Whitespace and comments between tokens collapse to one space.
        let mut text = String::new();
        let mut prev_end = None;
        for t in &self.toks[op_tok..self.pos] {
            if prev_end.is_some_and(|e| e < t.span.start) {
                text.push(' ');
            }
            text.push_str(&self.src[t.span.start..t.span.end]);
            prev_end = Some(t.span.end);
        }
        Ok(Stage {
            labelled: label.is_some(),
            name: label.unwrap_or_else(|| format!("s{position}")),
            op,
            span: start.to(end),
            text,
        })
    }

    fn op(&mut self) -> R<Op> {
        let Tok::Ident(word) = self.peek().clone() else {
            return Err(self.unexpected("a stage (filter, eval, select, drop, rename, enrich, dedup, sample, window, route, tee, to)"));
        };
        let word_span = self.span();
        let op = match word.as_str() {
            "filter" => {
                self.bump();
                Op::Filter(self.expr()?)
            }
            "eval" => {
                self.bump();
                Op::Eval(self.assignments()?)
            }
            "select" => {
                self.bump();
                Op::Select(self.names()?)
            }
            "drop" => {
                self.bump();
                Op::Drop(self.names()?)
            }
            "rename" => {
                self.bump();
                let mut v = Vec::new();
                loop {
                    let from = self.field_name()?;
                    self.expect_word("as")?;
                    let to = self.field_name()?;
                    v.push((from, to));
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                Op::Rename(v)
            }
            "enrich" => {
                self.bump();
                let table = self.table_name()?;
                self.expect_word("on")?;
                let on = self.field_name()?;
                let select = if self.eat_word("select") {
                    Some(self.names()?)
                } else {
                    None
                };
                Op::Enrich { table, on, select }
            }
            "dedup" => {
                self.bump();
                let fields = self.names()?;
                self.expect_word("within")?;
                let within_ns = self.duration("a duration after `within`, e.g. `5s`")?;
                Op::Dedup { fields, within_ns }
            }
            "sample" => {
                self.bump();
                let n_span = self.span();
                let n = self.int("a number after `sample`")?;
                if self.eat_word("in") {
                    if n != 1 {
                        return Err(Diagnostic::new(
                            n_span,
                            "`sample ... in N` keeps one record in N: write `sample 1 in N`",
                        ));
                    }
                    let n_span = self.span();
                    let n = self.int("N in `sample 1 in N`")?;
                    if n == 0 {
                        return Err(Diagnostic::new(n_span, "N must be at least 1"));
                    }
                    let by = if self.eat_word("by") {
                        self.names()?
                    } else {
                        Vec::new()
                    };
                    Op::SampleEvery { n, by }
                } else if self.eat_word("per") {
                    if n == 0 {
                        return Err(Diagnostic::new(n_span, "the count must be at least 1"));
                    }
                    let per_ns = self.duration("a duration after `per`, e.g. `1s`")?;
                    Op::SampleRate { n, per_ns }
                } else {
                    return Err(self.unexpected("`in` (sample 1 in N) or `per` (sample N per D)"));
                }
            }
            "window" => {
                self.bump();
                let kind = if self.eat_word("tumbling") {
                    WindowKind::Tumbling
                } else if self.eat_word("sliding") {
                    WindowKind::Sliding
                } else {
                    return Err(self.unexpected("`tumbling` or `sliding`"));
                };
                let size_ns = self.duration("the window size, e.g. `10s`")?;
                let every_ns = if kind == WindowKind::Sliding {
                    self.expect_word("every")?;
                    Some(self.duration("the slide interval, e.g. `1s`")?)
                } else {
                    if self.at_word("every") {
                        return Err(Diagnostic::new(
                            self.span(),
                            "`every` is for sliding windows; use `window sliding D every S`",
                        ));
                    }
                    None
                };
                let lateness_ns = if self.eat_word("lateness") {
                    // Zero lateness is allowed: windows close on the newest ts.
                    match *self.peek() {
                        Tok::Duration(0) => {
                            self.bump();
                            Some(0)
                        }
                        _ => Some(self.duration("a duration after `lateness`")?),
                    }
                } else {
                    None
                };
                let by = if self.eat_word("by") {
                    self.names()?
                } else {
                    Vec::new()
                };
                self.expect_word("emit")?;
                let emit = self.assignments()?;
                Op::Window {
                    kind,
                    size_ns,
                    every_ns,
                    lateness_ns,
                    by,
                    emit,
                }
            }
            "route" => {
                self.bump();
                let sink = self.plain_name("a sink name")?;
                self.expect_word("when")?;
                Op::Route {
                    sink,
                    when: self.expr()?,
                }
            }
            "tee" => {
                self.bump();
                Op::Tee(self.plain_name("a sink name")?)
            }
            "to" => {
                self.bump();
                let mut v = vec![self.plain_name("a sink name")?];
                while self.eat(&Tok::Comma) {
                    v.push(self.plain_name("a sink name")?);
                }
                Op::To(v)
            }
            _ => {
                let d = Diagnostic::new(word_span, format!("unknown stage `{word}`"));
                let words = [
                    "filter", "eval", "select", "drop", "rename", "enrich", "dedup", "sample",
                    "window", "route", "tee", "to",
                ];
                return Err(match super::diag::suggest(&word, words) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("stages: {}", words.join(", "))),
                });
            }
        };
        Ok(op)
    }

    fn int(&mut self, what: &str) -> R<u64> {
        match *self.peek() {
            Tok::Int(v) => {
                self.bump();
                Ok(v)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn duration(&mut self, what: &str) -> R<i64> {
        match *self.peek() {
            Tok::Duration(v) => {
                let span = self.bump().span;
                if v <= 0 {
                    return Err(Diagnostic::new(span, "a duration here must be above zero"));
                }
                Ok(v)
            }
            Tok::Int(_) => Err(Diagnostic::new(
                self.span(),
                format!("expected {what}: add a unit (ns, us, ms, s, m, h)"),
            )),
            _ => Err(self.unexpected(what)),
        }
    }

    /// A field name: a non-keyword identifier or a backtick name.
    fn field_name(&mut self) -> R<Name> {
        match self.peek().clone() {
            Tok::Ident(s) if !is_keyword(&s) => Ok(Name {
                name: s,
                span: self.bump().span,
            }),
            Tok::Quoted(s) => Ok(Name {
                name: s,
                span: self.bump().span,
            }),
            Tok::Ident(s) => Err(Diagnostic::new(
                self.span(),
                format!("`{s}` is a keyword; write `` `{s}` `` for a field of that name"),
            )),
            _ => Err(self.unexpected("a field name")),
        }
    }

    /// A sink or similar plain name.
    fn plain_name(&mut self, what: &str) -> R<Name> {
        match self.peek().clone() {
            Tok::Ident(s) if !is_keyword(&s) => Ok(Name {
                name: s,
                span: self.bump().span,
            }),
            Tok::Quoted(s) => Ok(Name {
                name: s,
                span: self.bump().span,
            }),
            _ => Err(self.unexpected(what)),
        }
    }

    fn table_name(&mut self) -> R<Name> {
        match self.peek().clone() {
            Tok::Table(s) => Ok(Name {
                name: s,
                span: self.bump().span,
            }),
            _ => Err(self.unexpected("a table (`@name`)")),
        }
    }

    fn names(&mut self) -> R<Vec<Name>> {
        let mut v = vec![self.field_name()?];
        while self.eat(&Tok::Comma) {
            v.push(self.field_name()?);
        }
        Ok(v)
    }

    fn assignments(&mut self) -> R<Vec<(Name, Expr)>> {
        let mut v = Vec::new();
        loop {
            let name = self.field_name()?;
            if *self.peek() == Tok::Eq {
                return Err(Diagnostic::new(
                    self.span(),
                    "expected `=` (assignment), found `==`",
                ));
            }
            self.expect(&Tok::Assign, "`=`")?;
            let e = self.expr()?;
            v.push((name, e));
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(v)
    }

    pub fn expr(&mut self) -> R<Expr> {
        self.or()
    }

    fn or(&mut self) -> R<Expr> {
        let mut l = self.and()?;
        while self.eat_word("or") {
            let r = self.and()?;
            l = bin(BinOp::Or, l, r);
        }
        Ok(l)
    }

    fn and(&mut self) -> R<Expr> {
        let mut l = self.not()?;
        while self.eat_word("and") {
            let r = self.not()?;
            l = bin(BinOp::And, l, r);
        }
        Ok(l)
    }

    fn not(&mut self) -> R<Expr> {
        if self.at_word("not") {
            let s = self.bump().span;
            let e = self.not()?;
            let span = s.to(e.span);
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(e)),
                span,
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> R<Expr> {
        let l = self.additive()?;
        let op = match self.peek() {
            Tok::Eq => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::Ident(w) if w == "in" => {
                self.bump();
                return self.membership(l);
            }
            Tok::Ident(w)
                if w == "not" && matches!(self.peek_at(1), Tok::Ident(x) if x == "in") =>
            {
                let s = self.bump().span;
                self.bump();
                let m = self.membership(l)?;
                let span = m.span.to(s);
                return Ok(Expr {
                    kind: ExprKind::Not(Box::new(m)),
                    span,
                });
            }
            _ => return Ok(l),
        };
        self.bump();
        let r = self.additive()?;
        if matches!(
            self.peek(),
            Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge
        ) {
            return Err(Diagnostic::new(
                self.span(),
                "comparisons do not chain; combine them with `and`",
            ));
        }
        Ok(bin(op, l, r))
    }

    fn membership(&mut self, l: Expr) -> R<Expr> {
        match self.peek().clone() {
            Tok::Table(name) => {
                let span = self.bump().span;
                let s = l.span.to(span);
                Ok(Expr {
                    kind: ExprKind::InTable(Box::new(l), Name { name, span }),
                    span: s,
                })
            }
            Tok::LBracket => {
                self.bump();
                let mut items = Vec::new();
                if *self.peek() != Tok::RBracket {
                    loop {
                        items.push(self.additive()?);
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                }
                let end = self.expect(&Tok::RBracket, "`,` or `]`")?;
                let s = l.span.to(end);
                Ok(Expr {
                    kind: ExprKind::InList(Box::new(l), items),
                    span: s,
                })
            }
            _ => Err(self.unexpected("a table (`@name`) or a list (`[...]`) after `in`")),
        }
    }

    fn additive(&mut self) -> R<Expr> {
        let mut l = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(l),
            };
            self.bump();
            let r = self.multiplicative()?;
            l = bin(op, l, r);
        }
    }

    fn multiplicative(&mut self) -> R<Expr> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::Percent => BinOp::Rem,
                _ => return Ok(l),
            };
            self.bump();
            let r = self.unary()?;
            l = bin(op, l, r);
        }
    }

    fn unary(&mut self) -> R<Expr> {
        if *self.peek() == Tok::Minus {
            let s = self.bump().span;
            let e = self.unary()?;
            let span = s.to(e.span);
            return Ok(Expr {
                kind: ExprKind::Neg(Box::new(e)),
                span,
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> R<Expr> {
        let span = self.span();
        let lit = |k| {
            Ok(Expr {
                kind: ExprKind::Lit(k),
                span,
            })
        };
        match self.peek().clone() {
            Tok::Int(v) => {
                self.bump();
                lit(Lit::Int(v))
            }
            Tok::Float(v) => {
                self.bump();
                lit(Lit::Float(v))
            }
            Tok::Duration(v) => {
                self.bump();
                lit(Lit::Duration(v))
            }
            Tok::Str(s) => {
                self.bump();
                lit(Lit::Str(s))
            }
            Tok::Param(p) => {
                self.bump();
                Ok(Expr {
                    kind: ExprKind::Param(p),
                    span,
                })
            }
            Tok::Quoted(f) => {
                self.bump();
                Ok(Expr {
                    kind: ExprKind::Field(f),
                    span,
                })
            }
            Tok::LParen => {
                self.bump();
                let e = self.expr()?;
                let end = self.expect(&Tok::RParen, "`)`")?;
                Ok(Expr {
                    kind: e.kind,
                    span: span.to(end),
                })
            }
            Tok::Ident(w) => match w.as_str() {
                "true" => {
                    self.bump();
                    lit(Lit::Bool(true))
                }
                "false" => {
                    self.bump();
                    lit(Lit::Bool(false))
                }
                "null" => {
                    self.bump();
                    lit(Lit::Null)
                }
                _ if *self.peek_at(1) == Tok::LParen => {
                    let name = Name {
                        name: w,
                        span: self.bump().span,
                    };
                    self.bump();
                    let mut args = Vec::new();
                    if *self.peek() != Tok::RParen {
                        loop {
                            args.push(self.expr()?);
                            if !self.eat(&Tok::Comma) {
                                break;
                            }
                        }
                    }
                    let end = self.expect(&Tok::RParen, "`,` or `)`")?;
                    Ok(Expr {
                        kind: ExprKind::Call(name, args),
                        span: span.to(end),
                    })
                }
                _ if is_keyword(&w) => Err(Diagnostic::new(
                    span,
                    format!(
                        "expected an expression, found the keyword `{w}` (write `` `{w}` `` for a field of that name)"
                    ),
                )),
                _ => {
                    self.bump();
                    Ok(Expr {
                        kind: ExprKind::Field(w),
                        span,
                    })
                }
            },
            _ => Err(self.unexpected("an expression")),
        }
    }
}

fn bin(op: BinOp, l: Expr, r: Expr) -> Expr {
    let span = l.span.to(r.span);
    Expr {
        kind: ExprKind::Binary(op, Box::new(l), Box::new(r)),
        span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(src: &str) -> Vec<Stage> {
        parse(src)
            .unwrap_or_else(|e| panic!("{}", e.locate("t", src, 0)))
            .stages
    }

    fn err(src: &str) -> String {
        let e = parse(src).unwrap_err();
        e.locate("t", src, 0).headline()
    }

    #[test]
    fn example_pipelines_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/examples");
        for name in [
            "ticks.mts",
            "ticks-vwap.mts",
            "iot.mts",
            "iot-downsample.mts",
        ] {
            let src = std::fs::read_to_string(dir.join(name)).unwrap();
            let p = parse(&src).unwrap_or_else(|e| panic!("{}", e.locate(name, &src, 0)));
            assert!(p.stages.len() >= 3, "{name}");
        }
    }

    #[test]
    fn labels_start_stages_without_pipes() {
        let s = stages(
            "       eval t = 1\n     | enrich @d on device select owner, floor\nheat:  route alerts when temp > $max\navg:   window tumbling 10s by device emit n = count()\n     | to journal\n",
        );
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["s1", "s2", "heat", "avg", "s5"]);
        match &s[1].op {
            Op::Enrich {
                select: Some(sel), ..
            } => {
                assert_eq!(
                    sel.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
                    ["owner", "floor"]
                )
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(s[2].text, "route alerts when temp > $max");
    }

    #[test]
    fn precedence() {
        let s = stages("filter a + b * c > 1 and not d or e == null | to x");
        let Op::Filter(e) = &s[0].op else { panic!() };
        // ((a + (b*c)) > 1 and (not d)) or (e == null)
        let ExprKind::Binary(BinOp::Or, l, _) = &e.kind else {
            panic!("{e:?}")
        };
        let ExprKind::Binary(BinOp::And, cmp, not) = &l.kind else {
            panic!()
        };
        assert!(matches!(not.kind, ExprKind::Not(_)));
        let ExprKind::Binary(BinOp::Gt, sum, _) = &cmp.kind else {
            panic!()
        };
        let ExprKind::Binary(BinOp::Add, _, prod) = &sum.kind else {
            panic!()
        };
        assert!(matches!(prod.kind, ExprKind::Binary(BinOp::Mul, _, _)));
    }

    #[test]
    fn function_names_are_fields_elsewhere() {
        let s = stages("eval f = floor(floor) | avg: select avg, floor | to x");
        assert_eq!(s[1].name, "avg");
        let Op::Eval(a) = &s[0].op else { panic!() };
        let ExprKind::Call(n, args) = &a[0].1.kind else {
            panic!()
        };
        assert_eq!(n.name, "floor");
        assert_eq!(args[0].kind, ExprKind::Field("floor".into()));
    }

    #[test]
    fn every_stage_form() {
        let s = stages(
            "select a, `window` | drop b | rename a as c, d as e | dedup k within 5s \
             | sample 1 in 10 by k | sample 5 per 1s | window sliding 10s every 1s lateness 2s emit m = max(v) \
             | tee side | filter x in [1, 2] and y not in @t | to a, b",
        );
        assert_eq!(s.len(), 10);
        assert!(matches!(s[4].op, Op::SampleEvery { n: 10, .. }));
        assert!(matches!(
            s[5].op,
            Op::SampleRate {
                n: 5,
                per_ns: 1_000_000_000
            }
        ));
        assert!(matches!(
            s[6].op,
            Op::Window {
                kind: WindowKind::Sliding,
                size_ns: 10_000_000_000,
                every_ns: Some(1_000_000_000),
                lateness_ns: Some(2_000_000_000),
                ..
            }
        ));
    }

    #[test]
    fn errors_point_at_the_token() {
        assert_eq!(
            err("filter a > | to x"),
            "t:1:12: expected an expression, found `|`"
        );
        assert_eq!(
            err("fitler a > 1"),
            "t:1:1: unknown stage `fitler`; did you mean `filter`?"
        );
        assert_eq!(
            err("eval x == 1 | to a"),
            "t:1:8: expected `=` (assignment), found `==`"
        );
        assert_eq!(
            err("filter a < b < c | to x"),
            "t:1:14: comparisons do not chain; combine them with `and`"
        );
        assert_eq!(
            err("window tumbling 10 emit n = count()"),
            "t:1:17: expected the window size, e.g. `10s`: add a unit (ns, us, ms, s, m, h)"
        );
        assert_eq!(
            err("a: to x\na: to y"),
            "t:2:1: stage name `a` is used twice"
        );
        assert_eq!(
            err("s2: filter a\n| to x"),
            "t:1:1: label `s2` is also the automatic name of stage 2; choose another label"
        );
        assert_eq!(
            err("sample 2 in 10 | to x"),
            "t:1:8: `sample ... in N` keeps one record in N: write `sample 1 in N`"
        );
        assert_eq!(
            err("filter in > 1"),
            "t:1:8: expected an expression, found the keyword `in` (write `` `in` `` for a field of that name)"
        );
        assert_eq!(
            err("to x y"),
            "t:1:6: expected the end of the stage (`|` or a new line with a label), found `y`"
        );
        assert_eq!(
            err(""),
            "t:1:1: the pipeline is empty; it needs at least `to SINK`"
        );
    }
}
