//! A parsed TOML document as a plain tree that remembers where every key and
//! value was written.
//!
//! Why not deserialize straight into the settings structs: serde stops at the
//! first error, and the operator should see all of them. So the file is parsed
//! once into this tree (only TOML syntax errors stop here) and then walked key
//! by key, each problem collected with its position.
//!
//! The tree is built from `toml_edit`'s parsed document, the same parser the
//! `toml` crate uses, because it exposes the byte span of every key and value
//! through public API. This module is the only one that knows about
//! `toml_edit`, so a change of parser stays here.

use std::ops::Range;

use crate::error::Position;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Byte range in the source. `None` for tables that were never written
    /// out (the `a` of `[a.b]`).
    pub(crate) span: Option<Range<usize>>,
    pub(crate) value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime,
    Array(Vec<Node>),
    /// Entries in the order written.
    Table(Vec<Entry>),
}

impl Value {
    /// The TOML type's name, for "expected X, found Y" messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A key, where it was written, and its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_span: Option<Range<usize>>,
    pub(crate) node: Node,
}

impl Entry {
    /// Where to point for a problem with the value: the value itself, or the
    /// key when the value has no span of its own.
    pub(crate) fn value_span(&self) -> Option<Range<usize>> {
        self.node.span.clone().or_else(|| self.key_span.clone())
    }
}

/// A TOML syntax error: the parser's message on one line and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) message: String,
    pub(crate) span: Option<Range<usize>>,
}

/// Parses `text` into the root table's entries.
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let document = toml_edit::ImDocument::parse(text).map_err(|error| SyntaxError {
        message: one_line(error.message()),
        span: error.span(),
    })?;
    Ok(table_entries(document.as_table()))
}

/// The parser's messages can span lines ("invalid key\nexpected ...");
/// the error format is one problem per line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn table_entries(table: &toml_edit::Table) -> Vec<Entry> {
    table
        .iter()
        .filter_map(|(key, item)| {
            let node = item_node(item)?;
            Some(Entry {
                key: key.to_owned(),
                key_span: table.key(key).and_then(toml_edit::Key::span),
                node,
            })
        })
        .collect()
}

fn inline_table_entries(table: &toml_edit::InlineTable) -> Vec<Entry> {
    table
        .iter()
        .map(|(key, value)| Entry {
            key: key.to_owned(),
            key_span: table.key(key).and_then(toml_edit::Key::span),
            node: value_node(value),
        })
        .collect()
}

/// `None` for `Item::None`, which a parsed document does not contain.
fn item_node(item: &toml_edit::Item) -> Option<Node> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(value) => Some(value_node(value)),
        toml_edit::Item::Table(table) => Some(Node {
            span: table.span(),
            value: Value::Table(table_entries(table)),
        }),
        toml_edit::Item::ArrayOfTables(array) => Some(Node {
            span: array.span(),
            value: Value::Array(
                array
                    .iter()
                    .map(|table| Node {
                        span: table.span(),
                        value: Value::Table(table_entries(table)),
                    })
                    .collect(),
            ),
        }),
    }
}

fn value_node(value: &toml_edit::Value) -> Node {
    let converted = match value {
        toml_edit::Value::String(text) => Value::String(text.value().clone()),
        toml_edit::Value::Integer(number) => Value::Integer(*number.value()),
        toml_edit::Value::Float(number) => Value::Float(*number.value()),
        toml_edit::Value::Boolean(flag) => Value::Boolean(*flag.value()),
        toml_edit::Value::Datetime(_) => Value::Datetime,
        toml_edit::Value::Array(array) => Value::Array(array.iter().map(value_node).collect()),
        toml_edit::Value::InlineTable(table) => Value::Table(inline_table_entries(table)),
    };
    Node {
        span: value.span(),
        value: converted,
    }
}

/// Turns byte offsets into 1-based line and column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line; the first is always 0.
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(
                text.char_indices()
                    .filter(|(_, character)| *character == '\n')
                    .map(|(offset, _)| offset + 1),
            )
            .collect();
        Self { text, line_starts }
    }

    /// The position of the start of `span`.
    pub(crate) fn position(&self, span: &Range<usize>) -> Position {
        let offset = span.start.min(self.text.len());
        // Number of line starts at or before `offset`; at least 1 because the
        // first line starts at 0.
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let line_start = line
            .checked_sub(1)
            .and_then(|index| self.line_starts.get(index))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(0, |prefix| prefix.chars().count())
            + 1;
        Position {
            line: line.max(1),
            column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(entries: &'a [Entry], key: &str) -> &'a Entry {
        entries.iter().find(|entry| entry.key == key).unwrap()
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "a = 1\n[limits]\n  b = \"x\"\n";
        let index = LineIndex::new(text);
        let root = parse(text).unwrap();
        let a = entry(&root, "a");
        assert_eq!(a.node.value, Value::Integer(1));
        assert_eq!(
            index.position(&a.key_span.clone().unwrap()),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            index.position(&a.value_span().unwrap()),
            Position { line: 1, column: 5 }
        );
        let limits = entry(&root, "limits");
        let Value::Table(entries) = &limits.node.value else {
            panic!("not a table")
        };
        let b = entry(entries, "b");
        assert_eq!(
            index.position(&b.key_span.clone().unwrap()),
            Position { line: 3, column: 3 }
        );
        assert_eq!(
            index.position(&b.value_span().unwrap()),
            Position { line: 3, column: 7 }
        );
    }

    #[test]
    fn implicit_and_dotted_tables_still_have_key_positions() {
        let text = "session.y = 2\n[limits.deep]\nx = 1\n";
        let index = LineIndex::new(text);
        let root = parse(text).unwrap();
        let limits = entry(&root, "limits");
        // The implicit `limits` table has no span of its own: fall back to
        // its key.
        assert_eq!(
            index.position(&limits.value_span().unwrap()),
            Position { line: 2, column: 2 }
        );
        // So has a table made by a dotted key.
        let session = entry(&root, "session");
        assert_eq!(
            index.position(&session.value_span().unwrap()),
            Position { line: 1, column: 1 }
        );
    }

    #[test]
    fn arrays_of_tables_keep_each_table_span() {
        let text = "[[listener]]\naddress = \"a\"\n\n[[listener]]\naddress = \"b\"\n";
        let index = LineIndex::new(text);
        let root = parse(text).unwrap();
        let Value::Array(tables) = &entry(&root, "listener").node.value else {
            panic!("not an array")
        };
        let lines: Vec<usize> = tables
            .iter()
            .map(|table| index.position(table.span.as_ref().unwrap()).line)
            .collect();
        assert_eq!(lines, vec![1, 4]);
    }

    #[test]
    fn datetimes_and_floats_are_typed() {
        let root = parse("d = 1979-05-27T07:32:00Z\nf = 1.5\n").unwrap();
        assert_eq!(entry(&root, "d").node.value, Value::Datetime);
        assert_eq!(entry(&root, "f").node.value, Value::Float(1.5));
    }

    #[test]
    fn syntax_error_has_one_line_message_and_position() {
        let text = "a = 1\nb = = 2\n";
        let error = parse(text).unwrap_err();
        assert!(!error.message.contains('\n'), "{}", error.message);
        let position = LineIndex::new(text).position(&error.span.unwrap());
        assert_eq!(position.line, 2);
    }

    #[test]
    fn duplicate_keys_are_a_syntax_error() {
        assert!(parse("a = 1\na = 2\n").is_err());
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "name = \"é\" # é\nx = 1";
        let index = LineIndex::new(text);
        // Byte 17 is the `x` on line 2.
        let offset = text.find('x').unwrap();
        assert_eq!(
            index.position(&(offset..offset + 1)),
            Position { line: 2, column: 1 }
        );
        let after = text.find('#').unwrap();
        assert_eq!(index.position(&(after..after)).column, 12);
    }
}
