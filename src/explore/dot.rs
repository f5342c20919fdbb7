//! Graphviz output for `x ps --dot` and `x sk --dot`: a small writer that
//! quotes every id and label, so any name (quotes, backslashes, newlines)
//! gives a graph that `dot` accepts.

use std::fmt::Write as _;

pub struct Dot {
    s: String,
}

/// `s` as a dot string literal.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(q, "\\\\x{:02x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

impl Dot {
    /// A directed graph with default node attributes `node`.
    pub fn digraph(name: &str, node: &str) -> Dot {
        let mut s = format!("digraph {} {{\n", quote(name));
        if !node.is_empty() {
            let _ = writeln!(s, "  node [{node}];");
        }
        Dot { s }
    }

    /// A node with a label (lines joined by newlines) and more attributes.
    pub fn node(&mut self, id: &str, label: &str, attrs: &str) {
        let _ = write!(self.s, "  {} [label={}", quote(id), quote(label));
        if !attrs.is_empty() {
            let _ = write!(self.s, ", {attrs}");
        }
        self.s.push_str("];\n");
    }

    pub fn edge(&mut self, from: &str, to: &str, label: Option<&str>, attrs: &str) {
        let _ = write!(self.s, "  {} -> {}", quote(from), quote(to));
        let mut a = Vec::new();
        if let Some(l) = label {
            a.push(format!("label={}", quote(l)));
        }
        if !attrs.is_empty() {
            a.push(attrs.to_string());
        }
        if !a.is_empty() {
            let _ = write!(self.s, " [{}]", a.join(", "));
        }
        self.s.push_str(";\n");
    }

    pub fn finish(mut self) -> String {
        self.s.push_str("}\n");
        self.s
    }
}
