//! A small RDF graph and its two writers, Turtle and JSON-LD: all the open-data
//! face needs to publish DCAT, with every string escaped by the rules of the
//! format it is written in.

use serde_json::{json, Map, Value};
use std::fmt::Write;

/// The prefixes the graph's predicates, classes and datatypes are written with.
const PREFIXES: [(&str, &str); 8] = [
    ("dcat", "http://www.w3.org/ns/dcat#"),
    ("dct", "http://purl.org/dc/terms/"),
    ("foaf", "http://xmlns.com/foaf/0.1/"),
    ("hydra", "http://www.w3.org/ns/hydra/core#"),
    ("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"),
    ("vcard", "http://www.w3.org/2006/vcard/ns#"),
    ("xsd", "http://www.w3.org/2001/XMLSchema#"),
    ("adms", "http://www.w3.org/ns/adms#"),
];

/// The object of a statement.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Object {
    /// A resource, by absolute IRI.
    Iri(String),
    /// A string in a language (a BCP 47 tag).
    Text(String, &'static str),
    /// A plain string.
    Plain(String),
    /// A typed literal; the datatype is a prefixed name (`xsd:date`).
    Typed(String, &'static str),
}

/// One subject: its IRI, its classes (prefixed names) and its statements,
/// each predicate a prefixed name.
#[derive(Debug, Default)]
pub(crate) struct Subject {
    iri: String,
    classes: Vec<&'static str>,
    statements: Vec<(&'static str, Object)>,
}

impl Subject {
    /// Adds a statement.
    pub(crate) fn add(&mut self, predicate: &'static str, object: Object) -> &mut Subject {
        self.statements.push((predicate, object));
        self
    }

    /// Adds a statement whose object is a resource.
    pub(crate) fn link(&mut self, predicate: &'static str, iri: &str) -> &mut Subject {
        self.add(predicate, Object::Iri(iri.to_string()))
    }
}

/// Subjects in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    subjects: Vec<Subject>,
}

impl Graph {
    /// Adds a subject of class `class` and answers it to describe.
    pub(crate) fn subject(&mut self, iri: impl Into<String>, class: &'static str) -> &mut Subject {
        self.subjects.push(Subject { iri: iri.into(), classes: vec![class], statements: Vec::new() });
        let last = self.subjects.len() - 1;
        &mut self.subjects[last]
    }

    /// The graph in Turtle.
    pub(crate) fn turtle(&self) -> String {
        let mut out = String::new();
        for (prefix, iri) in PREFIXES {
            let _ = writeln!(out, "@prefix {prefix}: <{iri}> .");
        }
        for subject in &self.subjects {
            let _ = write!(out, "\n<{}> a {}", iri_ref(&subject.iri), subject.classes.join(", "));
            for (predicate, object) in &subject.statements {
                let _ = write!(out, " ;\n    {predicate} {}", turtle_object(object));
            }
            out.push_str(" .\n");
        }
        out
    }

    /// The graph in JSON-LD: a context of the prefixes and one node object per
    /// subject, every value an array.
    pub(crate) fn json_ld(&self) -> Value {
        let context: Map<String, Value> =
            PREFIXES.iter().map(|(p, iri)| (p.to_string(), json!(iri))).collect();
        let graph: Vec<Value> = self
            .subjects
            .iter()
            .map(|subject| {
                let mut node = Map::new();
                node.insert("@id".into(), json!(iri_ref(&subject.iri)));
                node.insert("@type".into(), json!(subject.classes));
                for (predicate, object) in &subject.statements {
                    let values = node.entry(predicate.to_string()).or_insert_with(|| json!([]));
                    if let Value::Array(values) = values {
                        values.push(json_ld_object(object));
                    }
                }
                Value::Object(node)
            })
            .collect();
        json!({ "@context": context, "@graph": graph })
    }
}

fn turtle_object(object: &Object) -> String {
    match object {
        Object::Iri(iri) => format!("<{}>", iri_ref(iri)),
        Object::Text(value, lang) => format!("\"{}\"@{lang}", escape(value)),
        Object::Plain(value) => format!("\"{}\"", escape(value)),
        Object::Typed(value, datatype) => format!("\"{}\"^^{datatype}", escape(value)),
    }
}

fn json_ld_object(object: &Object) -> Value {
    match object {
        Object::Iri(iri) => json!({ "@id": iri_ref(iri) }),
        Object::Text(value, lang) => json!({ "@value": value, "@language": lang }),
        Object::Plain(value) => json!({ "@value": value }),
        Object::Typed(value, datatype) => json!({ "@value": value, "@type": datatype }),
    }
}

/// A Turtle string body: quotes, backslashes and control characters escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// An IRI as Turtle's IRIREF allows it: the characters it forbids
/// (`<>"{}|^`\`, spaces and controls) percent-encoded.
fn iri_ref(iri: &str) -> String {
    let mut out = String::with_capacity(iri.len());
    for c in iri.chars() {
        if c <= ' ' || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '^' | '`' | '\\') || c == '\u{7f}' {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_iris_are_escaped_for_turtle() {
        let mut graph = Graph::default();
        graph
            .subject("http://x/a b", "dcat:Dataset")
            .add("dct:title", Object::Text("say \"hi\"\\\n\u{1}".into(), "zh"))
            .add("dcat:byteSize", Object::Typed("5".into(), "xsd:nonNegativeInteger"))
            .link("dcat:accessURL", "http://x/<y>");
        let ttl = graph.turtle();
        assert!(ttl.contains("<http://x/a%20b> a dcat:Dataset ;"), "{ttl}");
        assert!(ttl.contains(r#"dct:title "say \"hi\"\\\n\u0001"@zh"#), "{ttl}");
        assert!(ttl.contains("dcat:byteSize \"5\"^^xsd:nonNegativeInteger"), "{ttl}");
        assert!(ttl.contains("dcat:accessURL <http://x/%3Cy%3E> ."), "{ttl}");
        let ld = graph.json_ld();
        assert_eq!(ld["@graph"][0]["dct:title"][0]["@value"], "say \"hi\"\\\n\u{1}");
        assert_eq!(ld["@graph"][0]["@type"][0], "dcat:Dataset");
        assert_eq!(ld["@context"]["dcat"], "http://www.w3.org/ns/dcat#");
    }
}
