//! Calico's label-selector language: parse, match, and print in canonical form.
//!
//! Calico resources pick nodes by their labels (`BGPPeer.spec.nodeSelector`,
//! `BGPPeer.spec.peerSelector`, `IPPool.spec.nodeSelector`, ...). This module turns the selector
//! text into a [`Selector`] value once, at the datastore edge, so the pure topology derivation
//! only ever calls [`Selector::matches`].
//!
//! # Grammar
//!
//! ```text
//! selector := ws* | or                      (empty or blank input is `all()`)
//! or       := and ( "||" and )*
//! and      := unary ( "&&" unary )*
//! unary    := "!" unary | "(" or ")" | primary
//! primary  := "all" "(" ")" | "global" "(" ")" | "has" "(" key ")"
//!           | key "==" str | key "!=" str
//!           | key "in" set | key "not" "in" set
//!           | key "contains" str | key "starts" "with" str | key "ends" "with" str
//! set      := "{" ( str ( "," str )* )? "}"
//! str      := "'" [^']* "'" | '"' [^"]* '"'       (no escapes, as in Calico)
//! key      := [A-Za-z0-9_./-]+
//! ```
//!
//! ASCII whitespace may appear between any two tokens. `&&` binds tighter than `||`. A word is
//! only a function call (`all`, `global`, `has`) when a `(` follows it, so labels called `has` or
//! `in` still work as keys.
//!
//! # Semantics over a node's labels
//!
//! `==`, `in`, `has`, `contains`, `starts with` and `ends with` are false when the label is
//! absent; `!=` and `not in` are true when it is absent (they are the negations of `==` and
//! `in`). `all()` matches everything. `global()` also matches everything: in Calico it selects
//! cluster-scoped objects, and every object we select with it (nodes) is cluster-scoped.
//!
//! # Design
//!
//! * A hand-written recursive-descent parser over bytes. It never backtracks, so parsing is
//!   linear in the input. `&&`/`||` chains are loops, and only `!` and `(` recurse; that
//!   recursion is bounded by [`MAX_DEPTH`], so hostile input gets an error, never a stack
//!   overflow. The bound also bounds the depth of the AST, which keeps matching, printing and
//!   dropping recursion shallow.
//! * The AST is normalised while it is built: `&&`/`||` are n-ary and a nested chain of the same
//!   operator is flattened (`a && (b && c)` is `a && b && c`), and set members are sorted and
//!   de-duplicated. Nothing else is rewritten (`!(k == 'v')` stays distinct from `k != 'v'`).
//!   [`Display`](fmt::Display) prints that AST with single spaces, single quotes unless the value
//!   contains one, and only the parentheses the precedence needs, so its output parses back to
//!   an equal [`Selector`] and equal selectors print identically. Serde uses that form too.
//! * Errors are a [`SelectorError`]: a typed [`SelectorErrorKind`] saying what was expected, the
//!   byte offset where it was expected, and the input quoted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// How deeply `!` and `(` may nest before parsing fails with [`SelectorErrorKind::TooDeep`].
pub const MAX_DEPTH: usize = 128;

/// A parsed label selector. Build it with [`Selector::parse`] (or `str::parse`, or serde), test
/// it with [`Selector::matches`], print its canonical form with `Display`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    expr: Expr,
}

/// The AST. Invariants (kept by [`Expr::and`] / [`Expr::or`] and the parser): `And`/`Or` have
/// at least two children and never a child of their own kind; no string holds both quote kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Expr {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// `&&` of `terms`, flattening nested `&&`; a single term is returned as is.
    fn and(terms: Vec<Expr>) -> Expr {
        Self::chain(terms, Expr::And, |e| match e {
            Expr::And(v) => Ok(v),
            other => Err(other),
        })
    }

    /// `||` of `terms`, flattening nested `||`; a single term is returned as is.
    fn or(terms: Vec<Expr>) -> Expr {
        Self::chain(terms, Expr::Or, |e| match e {
            Expr::Or(v) => Ok(v),
            other => Err(other),
        })
    }

    fn chain(
        terms: Vec<Expr>,
        make: fn(Vec<Expr>) -> Expr,
        split: fn(Expr) -> Result<Vec<Expr>, Expr>,
    ) -> Expr {
        let mut flat = Vec::with_capacity(terms.len());
        for term in terms {
            match split(term) {
                Ok(children) => flat.extend(children),
                Err(term) => flat.push(term),
            }
        }
        if flat.len() == 1 {
            flat.pop().unwrap_or(Expr::All)
        } else {
            make(flat)
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |k: &String| labels.get(k).map(String::as_str);
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k) => labels.contains_key(k),
            Expr::Eq(k, v) => get(k) == Some(v.as_str()),
            Expr::Ne(k, v) => get(k) != Some(v.as_str()),
            Expr::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Expr::NotIn(k, set) => !get(k).is_some_and(|v| set.contains(v)),
            Expr::Contains(k, s) => get(k).is_some_and(|v| v.contains(s.as_str())),
            Expr::StartsWith(k, s) => get(k).is_some_and(|v| v.starts_with(s.as_str())),
            Expr::EndsWith(k, s) => get(k).is_some_and(|v| v.ends_with(s.as_str())),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(terms) => terms.iter().all(|e| e.matches(labels)),
            Expr::Or(terms) => terms.iter().any(|e| e.matches(labels)),
        }
    }
}

impl Selector {
    /// The selector that matches every label set (`all()`, also what `""` parses to).
    pub fn all() -> Self {
        Selector { expr: Expr::All }
    }

    /// Parses selector text. Blank input is [`Selector::all`].
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut p = Parser {
            src: input,
            bytes: input.as_bytes(),
            pos: 0,
            depth: 0,
        };
        p.skip_ws();
        if p.at_end() {
            return Ok(Self::all());
        }
        let expr = p.parse_or()?;
        p.skip_ws();
        if !p.at_end() {
            return Err(p.error(p.pos, SelectorErrorKind::TrailingInput));
        }
        Ok(Selector { expr })
    }

    /// Whether a node (or any object) with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.expr.matches(labels)
    }

    /// Whether this is literally `all()` or `global()` (not whether it is equivalent to them).
    pub fn is_all(&self) -> bool {
        matches!(self.expr, Expr::All | Expr::Global)
    }
}

impl Default for Selector {
    /// `all()`, which is what Calico assumes for an omitted selector.
    fn default() -> Self {
        Self::all()
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a selector did not parse, where, and the input it was in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at offset {offset} in {input:?}")]
pub struct SelectorError {
    /// What was expected (or what went wrong).
    pub kind: SelectorErrorKind,
    /// Byte offset into `input` where it went wrong.
    pub offset: usize,
    /// The whole selector text.
    pub input: String,
}

/// What a [`SelectorError`] found wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorErrorKind {
    /// A term was expected (start of input, after `&&`, `||`, `!` or `(`).
    #[error("expected a label key, 'has(', 'all()', 'global()', '!' or '('")]
    ExpectedExpression,
    /// A label key was followed by something other than an operator.
    #[error(
        "expected '==', '!=', 'in', 'not in', 'contains', 'starts with' or 'ends with' after label key '{key}'"
    )]
    ExpectedOperator { key: String },
    /// A label key was expected, e.g. inside `has(`.
    #[error("expected a label key after '{after}'")]
    ExpectedKey { after: &'static str },
    /// A single- or double-quoted string was expected.
    #[error("expected a quoted string after '{after}'")]
    ExpectedString { after: &'static str },
    /// A fixed token was expected (`with` after `starts`, `{` after `in`, ...).
    #[error("expected '{expected}' after '{after}'")]
    ExpectedToken {
        expected: &'static str,
        after: &'static str,
    },
    /// A set member was followed by something other than `,` or `}`.
    #[error("expected ',' or '}}' after a set member")]
    ExpectedSetSeparator,
    /// A string's closing quote is missing (the offset is the opening quote).
    #[error("unterminated string: no closing {quote} for the quote")]
    UnterminatedString { quote: char },
    /// A `(` (of a group, `has(`, `all(` or `global(`) was not closed.
    #[error("expected ')' to close the '(' at offset {open}")]
    UnclosedParen { open: usize },
    /// A complete selector was followed by more input.
    #[error("unexpected input after a complete selector (expected '&&', '||' or the end)")]
    TrailingInput,
    /// `!` and `(` nest deeper than [`MAX_DEPTH`].
    #[error("selector nested deeper than {limit} levels")]
    TooDeep { limit: usize },
}

type Result<T, E = SelectorError> = std::result::Result<T, E>;

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    /// Always on a char boundary: we only step over ASCII bytes and whole quoted strings.
    pos: usize,
    depth: usize,
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

impl<'a> Parser<'a> {
    fn error(&self, offset: usize, kind: SelectorErrorKind) -> SelectorError {
        SelectorError {
            kind,
            offset,
            input: self.src.to_owned(),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then consumes `tok` if the input continues with it.
    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.bytes[self.pos..].starts_with(tok.as_bytes()) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    /// Skips whitespace, then consumes the longest run of key bytes (None if it is empty).
    fn word(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let start = self.pos;
        while self.peek().is_some_and(is_key_byte) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.src[start..self.pos])
    }

    /// Consumes the word `expected` or fails with [`SelectorErrorKind::ExpectedToken`].
    fn expect_word(&mut self, expected: &'static str, after: &'static str) -> Result<()> {
        self.skip_ws();
        let at = self.pos;
        if self.word() == Some(expected) {
            Ok(())
        } else {
            Err(self.error(at, SelectorErrorKind::ExpectedToken { expected, after }))
        }
    }

    fn parse_or(&mut self) -> Result<Expr> {
        let mut terms = vec![self.parse_and()?];
        while self.eat("||") {
            terms.push(self.parse_and()?);
        }
        Ok(Expr::or(terms))
    }

    fn parse_and(&mut self) -> Result<Expr> {
        let mut terms = vec![self.parse_unary()?];
        while self.eat("&&") {
            terms.push(self.parse_unary()?);
        }
        Ok(Expr::and(terms))
    }

    fn enter(&mut self, at: usize) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(at, SelectorErrorKind::TooDeep { limit: MAX_DEPTH }));
        }
        Ok(())
    }

    fn parse_unary(&mut self) -> Result<Expr> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(b'!') => {
                self.enter(start)?;
                self.pos += 1;
                let inner = self.parse_unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(inner)))
            }
            Some(b'(') => {
                self.enter(start)?;
                self.pos += 1;
                let inner = self.parse_or()?;
                self.close_paren(start)?;
                self.depth -= 1;
                Ok(inner)
            }
            _ => self.parse_primary(),
        }
    }

    fn close_paren(&mut self, open: usize) -> Result<()> {
        if self.eat(")") {
            Ok(())
        } else {
            Err(self.error(self.pos, SelectorErrorKind::UnclosedParen { open }))
        }
    }

    fn parse_primary(&mut self) -> Result<Expr> {
        self.skip_ws();
        let start = self.pos;
        let Some(word) = self.word() else {
            return Err(self.error(start, SelectorErrorKind::ExpectedExpression));
        };
        self.skip_ws();
        if self.peek() == Some(b'(') && matches!(word, "all" | "global" | "has") {
            let open = self.pos;
            self.pos += 1;
            let expr = match word {
                "all" => Expr::All,
                "global" => Expr::Global,
                _ => {
                    self.skip_ws();
                    let at = self.pos;
                    let Some(key) = self.word() else {
                        return Err(
                            self.error(at, SelectorErrorKind::ExpectedKey { after: "has(" })
                        );
                    };
                    Expr::Has(key.to_owned())
                }
            };
            self.close_paren(open)?;
            return Ok(expr);
        }

        let key = word.to_owned();
        if self.eat("==") {
            return Ok(Expr::Eq(key, self.string("==")?));
        }
        if self.eat("!=") {
            return Ok(Expr::Ne(key, self.string("!=")?));
        }
        let op_at = self.pos;
        match self.word() {
            Some("in") => Ok(Expr::In(key, self.set("in")?)),
            Some("not") => {
                self.expect_word("in", "not")?;
                Ok(Expr::NotIn(key, self.set("not in")?))
            }
            Some("contains") => Ok(Expr::Contains(key, self.string("contains")?)),
            Some("starts") => {
                self.expect_word("with", "starts")?;
                Ok(Expr::StartsWith(key, self.string("starts with")?))
            }
            Some("ends") => {
                self.expect_word("with", "ends")?;
                Ok(Expr::EndsWith(key, self.string("ends with")?))
            }
            _ => Err(self.error(op_at, SelectorErrorKind::ExpectedOperator { key })),
        }
    }

    fn string(&mut self, after: &'static str) -> Result<String> {
        self.skip_ws();
        let start = self.pos;
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.error(start, SelectorErrorKind::ExpectedString { after })),
        };
        let body = start + 1;
        match self.bytes[body..].iter().position(|&b| b == quote) {
            Some(len) => {
                self.pos = body + len + 1;
                Ok(self.src[body..body + len].to_owned())
            }
            None => Err(self.error(
                start,
                SelectorErrorKind::UnterminatedString {
                    quote: char::from(quote),
                },
            )),
        }
    }

    fn set(&mut self, after: &'static str) -> Result<BTreeSet<String>> {
        if !self.eat("{") {
            let at = self.pos;
            return Err(self.error(
                at,
                SelectorErrorKind::ExpectedToken {
                    expected: "{",
                    after,
                },
            ));
        }
        let mut members = BTreeSet::new();
        if self.eat("}") {
            return Ok(members);
        }
        members.insert(self.string("{")?);
        loop {
            if self.eat("}") {
                return Ok(members);
            }
            if !self.eat(",") {
                let at = self.pos;
                return Err(self.error(at, SelectorErrorKind::ExpectedSetSeparator));
            }
            members.insert(self.string(",")?);
        }
    }
}

/// Writes `s` in single quotes, or in double quotes when it contains a single quote. (A string
/// with both kinds cannot come out of the parser, so it cannot be in a `Selector`.)
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if s.contains('\'') {
        write!(f, "\"{s}\"")
    } else {
        write!(f, "'{s}'")
    }
}

fn write_set(f: &mut fmt::Formatter<'_>, set: &BTreeSet<String>) -> fmt::Result {
    f.write_str("{")?;
    for (i, member) in set.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_quoted(f, member)?;
    }
    f.write_str("}")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => {
                write!(f, "{k} == ")?;
                write_quoted(f, v)
            }
            Expr::Ne(k, v) => {
                write!(f, "{k} != ")?;
                write_quoted(f, v)
            }
            Expr::In(k, set) => {
                write!(f, "{k} in ")?;
                write_set(f, set)
            }
            Expr::NotIn(k, set) => {
                write!(f, "{k} not in ")?;
                write_set(f, set)
            }
            Expr::Contains(k, s) => {
                write!(f, "{k} contains ")?;
                write_quoted(f, s)
            }
            Expr::StartsWith(k, s) => {
                write!(f, "{k} starts with ")?;
                write_quoted(f, s)
            }
            Expr::EndsWith(k, s) => {
                write!(f, "{k} ends with ")?;
                write_quoted(f, s)
            }
            Expr::Not(inner) => match **inner {
                Expr::And(_) | Expr::Or(_) => write!(f, "!({inner})"),
                _ => write!(f, "!{inner}"),
            },
            // `&&` binds tighter than `||`, so only an `||` inside `&&` needs parentheses (and a
            // same-kind child, which the invariants rule out, would get them too).
            Expr::And(terms) => write_chain(f, terms, " && ", |e| {
                matches!(e, Expr::Or(_) | Expr::And(_))
            }),
            Expr::Or(terms) => write_chain(f, terms, " || ", |e| matches!(e, Expr::Or(_))),
        }
    }
}

fn write_chain(
    f: &mut fmt::Formatter<'_>,
    terms: &[Expr],
    sep: &str,
    needs_parens: fn(&Expr) -> bool,
) -> fmt::Result {
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if needs_parens(term) {
            write!(f, "({term})")?;
        } else {
            write!(f, "{term}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Selector {
    /// The canonical form: parses back to an equal `Selector`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Selector;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Calico label selector string")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Selector, E> {
                Selector::parse(s).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matching_table() {
        /// (selector, the node's labels, whether it matches)
        type Case = (&'static str, &'static [(&'static str, &'static str)], bool);
        let cases: &[Case] = &[
            // all(), global(), empty
            ("", &[], true),
            ("  \t\n", &[("a", "b")], true),
            ("all()", &[], true),
            ("global()", &[("a", "b")], true),
            // ==
            ("rack == 'r1'", &[("rack", "r1")], true),
            ("rack == 'r1'", &[("rack", "r2")], false),
            ("rack == 'r1'", &[], false),
            ("rack == ''", &[("rack", "")], true),
            ("rack == ''", &[], false),
            // != is true when absent
            ("rack != 'r1'", &[("rack", "r1")], false),
            ("rack != 'r1'", &[("rack", "r2")], true),
            ("rack != 'r1'", &[], true),
            // in / not in, including empty sets and absent labels
            ("rack in {'r1', 'r2'}", &[("rack", "r2")], true),
            ("rack in {'r1', 'r2'}", &[("rack", "r3")], false),
            ("rack in {'r1', 'r2'}", &[], false),
            ("rack in {}", &[("rack", "r1")], false),
            ("rack not in {'r1', 'r2'}", &[("rack", "r1")], false),
            ("rack not in {'r1', 'r2'}", &[("rack", "r3")], true),
            ("rack not in {'r1', 'r2'}", &[], true),
            ("rack not in {}", &[], true),
            ("rack not in {}", &[("rack", "x")], true),
            // has / !has
            ("has(rack)", &[("rack", "")], true),
            ("has(rack)", &[("rackx", "r1")], false),
            ("!has(rack)", &[], true),
            ("!has(rack)", &[("rack", "r1")], false),
            // contains / starts with / ends with: false when absent
            ("zone contains 'east'", &[("zone", "us-east-1")], true),
            ("zone contains 'east'", &[("zone", "us-west-1")], false),
            ("zone contains 'east'", &[], false),
            ("zone contains ''", &[("zone", "x")], true),
            ("zone contains ''", &[], false),
            ("zone starts with 'us-'", &[("zone", "us-east-1")], true),
            ("zone starts with 'us-'", &[("zone", "eu-us-1")], false),
            ("zone starts with 'us-'", &[], false),
            ("zone ends with '-1'", &[("zone", "us-east-1")], true),
            ("zone ends with '-1'", &[("zone", "us-1-east")], false),
            ("zone ends with '-1'", &[], false),
            // precedence: && binds tighter than ||
            ("a == '1' || b == '1' && c == '1'", &[("a", "1")], true),
            ("a == '1' || b == '1' && c == '1'", &[("b", "1")], false),
            (
                "a == '1' || b == '1' && c == '1'",
                &[("b", "1"), ("c", "1")],
                true,
            ),
            ("b == '1' && c == '1' || a == '1'", &[("a", "1")], true),
            // parentheses override it
            ("(a == '1' || b == '1') && c == '1'", &[("a", "1")], false),
            (
                "(a == '1' || b == '1') && c == '1'",
                &[("a", "1"), ("c", "1")],
                true,
            ),
            ("((has(a)))", &[("a", "")], true),
            // negation binds to the next term only
            ("!a == '1'", &[], true),
            ("!a == '1'", &[("a", "1")], false),
            ("!a == '1' && has(b)", &[], false),
            ("!(a == '1' && has(b))", &[("a", "1")], true),
            ("!(a == '1' && has(b))", &[("a", "1"), ("b", "")], false),
            ("!!has(a)", &[("a", "x")], true),
            ("! ! has(a)", &[], false),
            ("all() && !has(x)", &[("x", "1")], false),
            // quoting: both styles, each containing the other quote
            ("rack == \"r1\"", &[("rack", "r1")], true),
            ("v == \"it's\"", &[("v", "it's")], true),
            ("v == 'say \"hi\"'", &[("v", "say \"hi\"")], true),
            ("v in {\"it's\", 'a\"b'}", &[("v", "a\"b")], true),
            ("v == '&& || ( ) !'", &[("v", "&& || ( ) !")], true),
            // keys with / . - _ and digits
            (
                "projectcalico.org/rack == 'r1'",
                &[("projectcalico.org/rack", "r1")],
                true,
            ),
            (
                "kubernetes.io/hostname in {\"node-1\"}",
                &[("kubernetes.io/hostname", "node-1")],
                true,
            ),
            ("my_key-2.x == 'v'", &[("my_key-2.x", "v")], true),
            ("9lives == 'v'", &[("9lives", "v")], true),
            // words that are keywords elsewhere still work as keys
            ("has == 'x'", &[("has", "x")], true),
            ("in in {'in'}", &[("in", "in")], true),
            ("has(all)", &[("all", "")], true),
            // free whitespace, and none
            (
                "  rack==\t'r1'\n&&has( zone )  ",
                &[("rack", "r1"), ("zone", "z")],
                true,
            ),
            ("rack in{'r1'}&&!has(x)||zone!='a'", &[("zone", "a")], false),
            ("has (a)", &[("a", "")], true),
            (
                "rack in {'r1'} && !(zone starts with 'eu' || zone ends with 'b')",
                &[("rack", "r1"), ("zone", "us-a")],
                true,
            ),
            (
                "rack in {'r1'} && !(zone starts with 'eu' || zone ends with 'b')",
                &[("rack", "r1"), ("zone", "us-b")],
                false,
            ),
        ];
        for (text, pairs, expected) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(
                selector.matches(&labels(pairs)),
                *expected,
                "{text:?} against {pairs:?} (parsed as {selector})"
            );
        }
    }

    #[test]
    fn invalid_table() {
        let deep_parens = "(".repeat(200);
        let deep_nots = format!("{}all()", "!".repeat(200));
        let cases: &[(&str, &str, usize)] = &[
            ("rack == 1", "expected a quoted string after '=='", 8),
            ("rack != ", "expected a quoted string after '!='", 8),
            (
                "rack contains x",
                "expected a quoted string after 'contains'",
                14,
            ),
            (
                "rack starts with",
                "expected a quoted string after 'starts with'",
                16,
            ),
            ("rack", "after label key 'rack'", 4),
            ("rack = 'a'", "expected '==', '!='", 5),
            ("r@ck == 'a'", "after label key 'r'", 1),
            ("rack equals 'a'", "after label key 'rack'", 5),
            ("rack == 'a", "unterminated string: no closing '", 8),
            ("rack == \"a", "unterminated string: no closing \"", 8),
            ("rack in 'a'", "expected '{' after 'in'", 8),
            ("rack not in ('a')", "expected '{' after 'not in'", 12),
            (
                "rack in {'a' 'b'}",
                "expected ',' or '}' after a set member",
                13,
            ),
            ("rack in {'a',}", "expected a quoted string after ','", 13),
            ("rack in {a}", "expected a quoted string after '{'", 9),
            ("rack in {'a'", "expected ',' or '}'", 12),
            ("rack not 'a'", "expected 'in' after 'not'", 9),
            ("rack starts 'a'", "expected 'with' after 'starts'", 12),
            ("rack ends wit 'a'", "expected 'with' after 'ends'", 10),
            ("has()", "expected a label key after 'has('", 4),
            ("has(rack", "expected ')' to close the '(' at offset 3", 8),
            (
                "has(rack == 'a')",
                "expected ')' to close the '(' at offset 3",
                9,
            ),
            ("all(", "expected ')' to close the '(' at offset 3", 4),
            ("global(x)", "expected ')' to close the '(' at offset 6", 7),
            (
                "(rack == 'a'",
                "expected ')' to close the '(' at offset 0",
                12,
            ),
            ("rack == 'a' &&", "expected a label key, 'has('", 14),
            ("rack == 'a' || ", "expected a label key", 15),
            ("&& rack == 'a'", "expected a label key", 0),
            ("()", "expected a label key", 1),
            ("!", "expected a label key", 1),
            ("ünïcode == 'a'", "expected a label key", 0),
            (
                "rack == 'a' rack == 'b'",
                "unexpected input after a complete selector",
                12,
            ),
            ("rack == 'a' & has(x)", "unexpected input", 12),
            ("rack == 'a' ||| has(x)", "expected a label key", 14),
            ("rack == 'a')", "unexpected input", 11),
            ("all() all()", "unexpected input", 6),
            (&deep_parens, "nested deeper than 128 levels", 128),
            (&deep_nots, "nested deeper than 128 levels", 128),
        ];
        for (text, fragment, offset) in cases {
            let err = Selector::parse(text).expect_err(text);
            let msg = err.to_string();
            assert!(
                msg.contains(fragment),
                "{text:?}: {msg:?} lacks {fragment:?}"
            );
            assert_eq!(err.offset, *offset, "{text:?}: {msg}");
            assert!(
                msg.contains(&format!("at offset {offset} in {text:?}")),
                "{msg}"
            );
            assert_eq!(err.input, *text);
        }
    }

    #[test]
    fn error_message_shape() {
        let err = Selector::parse("rack == 1").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"expected a quoted string after '==' at offset 8 in "rack == 1""#
        );
        assert_eq!(err.kind, SelectorErrorKind::ExpectedString { after: "==" });
    }

    #[test]
    fn depth_limit_is_exact_and_flat_chains_are_unbounded() {
        let ok = format!("{}all(){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(Selector::parse(&ok), Ok(Selector::all()));
        let ok = format!("{}has(a)", "!".repeat(MAX_DEPTH));
        assert!(Selector::parse(&ok).is_ok());
        let mixed = format!("{}has(a)", "!(".repeat(MAX_DEPTH / 2 + 1));
        assert!(matches!(
            Selector::parse(&mixed).map_err(|e| e.kind),
            Err(SelectorErrorKind::TooDeep { limit: MAX_DEPTH })
        ));
        // Long &&/|| chains are loops, not recursion.
        let chain = vec!["has(a) && has(b)"; 50_000].join(" || ");
        let s = Selector::parse(&chain).unwrap();
        assert!(s.matches(&labels(&[("a", ""), ("b", "")])));
        assert!(!s.matches(&labels(&[("a", "")])));
        assert_eq!(Selector::parse(&s.to_string()), Ok(s));
    }

    #[test]
    fn canonical_display() {
        let cases = [
            ("", "all()"),
            ("  global( ) ", "global()"),
            ("  rack==\"r1\"", "rack == 'r1'"),
            ("v==\"it's\"", "v == \"it's\""),
            ("k in {'b','a','b'}", "k in {'a', 'b'}"),
            ("k not in{ }", "k not in {}"),
            ("has( k )", "has(k)"),
            ("!(has(a))", "!has(a)"),
            ("!(a == 'x' || b != 'y')", "!(a == 'x' || b != 'y')"),
            (
                "a == 'x' && (b == 'y' && c == 'z')",
                "a == 'x' && b == 'y' && c == 'z'",
            ),
            (
                "(a == 'x' || b == 'y') || c == 'z'",
                "a == 'x' || b == 'y' || c == 'z'",
            ),
            ("(a==''||b=='')&&c==''", "(a == '' || b == '') && c == ''"),
            ("(a=='' && b=='') || c==''", "a == '' && b == '' || c == ''"),
            (
                "z contains 'x'&&z starts  with 'y'&&z ends\twith 'w'",
                "z contains 'x' && z starts with 'y' && z ends with 'w'",
            ),
        ];
        for (input, canonical) in cases {
            let s = Selector::parse(input).unwrap();
            assert_eq!(s.to_string(), canonical, "{input:?}");
            assert_eq!(Selector::parse(canonical), Ok(s));
        }
        assert_eq!(
            Selector::parse("k in {'a','b'}"),
            Selector::parse("k in {'b', \"a\"}")
        );
    }

    #[test]
    fn serde_string_form() {
        #[derive(serde::Deserialize, serde::Serialize, Debug)]
        struct Peer {
            #[serde(default)]
            node_selector: Option<Selector>,
        }
        let peer: Peer = serde_json::from_str(r#"{"node_selector": "rack==\"r1\""}"#).unwrap();
        let sel = peer.node_selector.as_ref().unwrap();
        assert!(sel.matches(&labels(&[("rack", "r1")])));
        assert_eq!(
            serde_json::to_string(&peer).unwrap(),
            r#"{"node_selector":"rack == 'r1'"}"#
        );
        let none: Peer = serde_json::from_str("{}").unwrap();
        assert!(none.node_selector.is_none());

        let err = serde_json::from_str::<Peer>(r#"{"node_selector": "rack == 1"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains(r#"expected a quoted string after '==' at offset 8 in "rack == 1""#),
            "{err}"
        );
        let err = serde_json::from_str::<Peer>(r#"{"node_selector": 7}"#).unwrap_err();
        assert!(err.to_string().contains("label selector string"), "{err}");
    }

    #[test]
    fn defaults_and_from_str() {
        assert_eq!(Selector::default(), Selector::all());
        assert!(Selector::all().is_all());
        assert!("global()".parse::<Selector>().unwrap().is_all());
        assert!(!"has(a)".parse::<Selector>().unwrap().is_all());
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_./-]{1,12}",
            Just("has".to_owned()),
            Just("all".to_owned()),
            Just("in".to_owned()),
            Just("not".to_owned()),
            Just("projectcalico.org/rack".to_owned()),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[^']{0,8}",
            "[^\"]{0,8}",
            "[a-z '\"&|(){},!]{0,6}"
                .prop_filter("one quote kind", |s| !(s.contains('\'') && s.contains('"')))
        ]
    }

    fn set() -> impl Strategy<Value = BTreeSet<String>> {
        prop::collection::btree_set(value(), 0..4)
    }

    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            Just(Expr::All),
            Just(Expr::Global),
            key().prop_map(Expr::Has),
            (key(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
            (key(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
            (key(), set()).prop_map(|(k, s)| Expr::In(k, s)),
            (key(), set()).prop_map(|(k, s)| Expr::NotIn(k, s)),
            (key(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
            (key(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
            (key(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
        ];
        leaf.prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..5).prop_map(Expr::and),
                prop::collection::vec(inner, 2..5).prop_map(Expr::or),
            ]
        })
    }

    /// Token soup: more likely than arbitrary text to get deep into the parser.
    fn soup() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("k"),
            Just("a.b/c-d"),
            Just("=="),
            Just("!="),
            Just("="),
            Just("!"),
            Just("&&"),
            Just("||"),
            Just("&"),
            Just("("),
            Just(")"),
            Just("{"),
            Just("}"),
            Just(","),
            Just("'v'"),
            Just("\"w'\""),
            Just("'"),
            Just("\""),
            Just("in"),
            Just("not"),
            Just("has"),
            Just("all"),
            Just("global"),
            Just("contains"),
            Just("starts"),
            Just("ends"),
            Just("with"),
            Just(" "),
            Just("é"),
        ];
        prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
    }

    proptest! {
        #[test]
        fn display_round_trips(e in expr()) {
            let selector = Selector { expr: e };
            let text = selector.to_string();
            let parsed = Selector::parse(&text);
            prop_assert_eq!(parsed.as_ref(), Ok(&selector), "text: {}", text);
        }

        #[test]
        fn random_text_never_panics(text in any::<String>()) {
            let _ = Selector::parse(&text);
        }

        #[test]
        fn token_soup_never_panics_and_round_trips(text in soup()) {
            match Selector::parse(&text) {
                Ok(s) => {
                    let _ = s.matches(&labels(&[("k", "v"), ("a.b/c-d", "w'")]));
                    let canonical = s.to_string();
                    prop_assert_eq!(Selector::parse(&canonical), Ok(s), "{:?} -> {:?}", text, canonical);
                }
                Err(e) => {
                    prop_assert!(e.offset <= text.len());
                    prop_assert!(text.is_char_boundary(e.offset));
                }
            }
        }
    }
}
