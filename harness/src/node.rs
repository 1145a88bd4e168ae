//! A TOML document as a tree of nodes that remember where they were written, so that every
//! complaint about a case can say `path:line:column`.

use std::fmt;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// A byte range in the case file.
pub type Span = Range<usize>;

/// One TOML value with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the value was written.
    pub span: Span,
    /// The value.
    pub kind: NodeKind,
}

/// The kinds of TOML value a case can hold (datetimes are refused).
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<Node>),
    /// A table, in document order: key, the key's span, value.
    Table(Vec<(String, Span, Node)>),
}

impl NodeKind {
    /// The TOML name of the kind, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Str(_) => "a string",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a float",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Array(_) => "an array",
            NodeKind::Table(_) => "a table",
        }
    }
}

/// A complaint about a case file at a byte offset; rendered as `path:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaseError {
    /// The case file.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for CaseError {}

/// Maps byte offsets of one file to lines and columns.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file's path as given.
    pub path: String,
    /// Its text.
    pub text: String,
}

impl Source {
    /// The 1-based line and column of byte `offset` (an offset inside a character counts as
    /// that character's).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// An error at the start of `span`.
    pub fn error(&self, span: &Span, message: impl Into<String>) -> CaseError {
        let (line, column) = self.line_col(span.start);
        CaseError {
            path: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// `wrong type: WHAT must be WANT, found ...` at `n`.
    pub fn wrong_type(&self, n: &Node, what: &str, want: &str) -> CaseError {
        let found = match &n.kind {
            NodeKind::Str(s) => format!("the string {s:?}"),
            k => k.type_name().to_string(),
        };
        self.error(
            &n.span,
            format!("wrong type: {what} must be {want}, found {found}"),
        )
    }

    /// Parses the text into a node tree (a TOML syntax error carries its position).
    pub fn parse(&self) -> Result<Node, CaseError> {
        // The parser recovers and reports every error; the first in the file is the one to fix.
        let (table, errors) = DeTable::parse_recoverable(&self.text);
        if let Some(e) = errors
            .iter()
            .min_by_key(|e| e.span().map(|s| s.start).unwrap_or(0))
        {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            return Err(self.error(&span, format!("TOML syntax error: {msg}")));
        }
        let span = table.span();
        convert_table(self, table.get_ref(), span)
    }
}

fn convert_table(src: &Source, t: &DeTable<'_>, span: Span) -> Result<Node, CaseError> {
    let mut out = Vec::with_capacity(t.len());
    for (k, v) in t.iter() {
        out.push((
            k.get_ref().to_string(),
            k.span(),
            convert(src, v.get_ref(), v.span())?,
        ));
    }
    Ok(Node {
        span,
        kind: NodeKind::Table(out),
    })
}

fn convert(src: &Source, v: &DeValue<'_>, span: Span) -> Result<Node, CaseError> {
    let kind = match v {
        DeValue::String(s) => NodeKind::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => NodeKind::Int(n),
            Err(_) => return Err(src.error(&span, "integer out of range")),
        },
        DeValue::Float(f) => match f.as_str().parse::<f64>() {
            Ok(x) => NodeKind::Float(x),
            Err(_) => return Err(src.error(&span, "bad float")),
        },
        DeValue::Boolean(b) => NodeKind::Bool(*b),
        DeValue::Datetime(_) => return Err(src.error(&span, "datetimes have no meaning in a case")),
        DeValue::Array(a) => {
            let mut items = Vec::with_capacity(a.len());
            for e in a.iter() {
                items.push(convert(src, e.get_ref(), e.span())?);
            }
            NodeKind::Array(items)
        }
        DeValue::Table(t) => return convert_table(src, t, span),
    };
    Ok(Node { span, kind })
}

impl Node {
    /// The node as plain JSON (spans dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            NodeKind::Str(s) => J::String(s.clone()),
            NodeKind::Int(i) => J::from(*i),
            NodeKind::Float(f) => J::from(*f),
            NodeKind::Bool(b) => J::Bool(*b),
            NodeKind::Array(a) => J::Array(a.iter().map(Node::to_json).collect()),
            NodeKind::Table(t) => {
                J::Object(t.iter().map(|(k, _, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entries, if this is a table.
    pub fn as_table(&self) -> Option<&[(String, Span, Node)]> {
        match &self.kind {
            NodeKind::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The entry `key` of a table.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_table()?
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| v)
    }
}
