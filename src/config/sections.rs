//! routes.yaml text → raw types, reporting every problem: when the whole file does not
//! deserialize, each top-level key, each channel and each rule is deserialized on its own, so one
//! bad section does not hide the others. Every problem names the field path and its line:column.

use indexmap::IndexMap;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_saphyr::Spanned;

use super::raw::{RawChannel, RawConfig, RawRule};
use super::Problem;

/// What parsed, with every problem found.
pub(super) struct Parsed {
    /// The sections that parsed (a bad channel or rule is left out).
    pub raw: RawConfig,
    /// Every channel name written, including those whose definition has problems.
    pub channel_names: Vec<String>,
}

/// Parses the whole file; on failure, section by section.
pub(super) fn parse_sections(text: &str) -> (Option<Parsed>, Vec<Problem>) {
    let first = match deserialize::<RawConfig>(text, "") {
        Ok(raw) => {
            let channel_names = raw.channels.keys().cloned().collect();
            return (Some(Parsed { raw, channel_names }), Vec::new());
        }
        Err(p) => p,
    };
    // Not even a mapping of keys (a YAML syntax error, a list at the top): nothing to split.
    let Ok(top) = deserialize::<Entries>(text, "") else {
        return (None, vec![first]);
    };
    let mut problems = Vec::new();
    let mut raw = RawConfig {
        channels: IndexMap::new(),
        rules: Vec::new(),
        refund_duplicates: false,
    };
    let mut channel_names = Vec::new();
    let mut seen_channels = false;
    for (i, (key, value)) in top.0.iter().enumerate() {
        let end = top
            .0
            .get(i + 1)
            .map_or(text.len(), |(k, _)| line_start(text, k));
        let section = only(text, offset(value), end);
        match key.value.as_str() {
            "channels" => {
                seen_channels = true;
                let entries = match deserialize::<Entries>(&section, "channels") {
                    Ok(e) => e,
                    Err(p) => {
                        problems.push(p);
                        continue;
                    }
                };
                for (j, (name, def)) in entries.0.iter().enumerate() {
                    let end = entries
                        .0
                        .get(j + 1)
                        .map_or(end, |(k, _)| line_start(text, k));
                    let path = format!("channels.{}", name.value);
                    channel_names.push(name.value.clone());
                    match deserialize::<RawChannel>(&only(text, offset(def), end), &path) {
                        Ok(ch) => {
                            raw.channels.insert(name.value.clone(), ch);
                        }
                        Err(p) => problems.push(located(p, name)),
                    }
                }
            }
            "rules" => {
                let items = match deserialize::<Vec<Spanned<IgnoredAny>>>(&section, "rules") {
                    Ok(items) => items,
                    Err(p) => {
                        problems.push(p);
                        continue;
                    }
                };
                for (j, item) in items.iter().enumerate() {
                    let end = items.get(j + 1).map_or(end, |n| line_start(text, n));
                    let path = format!("rules[{j}]");
                    match deserialize::<RawRule>(&only(text, offset(item), end), &path) {
                        Ok(rule) => raw.rules.push(rule),
                        Err(p) => problems.push(located(p, item)),
                    }
                }
            }
            "refund_duplicates" => match deserialize::<bool>(&section, "refund_duplicates") {
                Ok(b) => raw.refund_duplicates = b,
                Err(p) => problems.push(located(p, key)),
            },
            other => problems.push(Problem {
                line: key.referenced.line(),
                column: key.referenced.column(),
                message: format!(
                    "unknown field `{other}`, expected one of channels, rules, refund_duplicates"
                ),
            }),
        }
    }
    if !seen_channels {
        problems.push(Problem {
            line: 1,
            column: 1,
            message: "missing field `channels`".into(),
        });
    }
    // Whatever made the whole file fail must be among the problems, even where splitting it
    // into sections cannot show it.
    if !problems
        .iter()
        .any(|p| (p.line, p.column) == (first.line, first.column))
    {
        problems.push(first);
    }
    (Some(Parsed { raw, channel_names }), problems)
}

/// A mapping's entries in file order, with where each key and value starts.
struct Entries(Vec<(Spanned<String>, Spanned<IgnoredAny>)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Deserializes `text`, naming the failing field by its path below `prefix`.
fn deserialize<T: DeserializeOwned>(text: &str, prefix: &str) -> Result<T, Problem> {
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let field = match (prefix, path.as_str()) {
            (p, ".") | (p, "") => p.to_string(),
            ("", q) => q.to_string(),
            (p, q) if q.starts_with('[') => format!("{p}{q}"),
            (p, q) => format!("{p}.{q}"),
        };
        let message = plain_message(&e.to_string());
        Problem {
            line,
            column,
            message: if field.is_empty() {
                message
            } else {
                format!("{field}: {message}")
            },
        }
    })
}

/// The deserializer's message without its location (ours is separate), in the file's terms.
fn plain_message(rendered: &str) -> String {
    // Rendered forms: "error: line L column C: MESSAGE\n<snippet>" or "MESSAGE at line L, column C".
    let first = rendered.lines().next().unwrap_or("invalid YAML");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = match first.split_once(": ") {
        Some((loc, rest)) if loc.starts_with("line ") => rest,
        _ => first,
    };
    let first = match first.rfind(" at line ") {
        Some(i) if first[i..].contains(", column ") => &first[..i],
        _ => first,
    };
    let integer = ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"]
        .iter()
        .any(|t| first == format!("invalid {t}"));
    if integer {
        "expected an integer".into()
    } else if first == "invalid bool" || first == "invalid boolean" {
        "expected true or false".into()
    } else if first == "expected sequence start" {
        "expected a list".into()
    } else if first == "expected mapping start" {
        "expected a mapping".into()
    } else {
        first.to_string()
    }
}

/// A problem without a location (an empty section) is put at the section's start.
fn located<T>(mut p: Problem, at: &Spanned<T>) -> Problem {
    if p.line == 0 {
        p.line = at.referenced.line();
        p.column = at.referenced.column();
    }
    p
}

fn offset<T>(s: &Spanned<T>) -> usize {
    s.referenced
        .span()
        .byte_offset()
        .and_then(|o| usize::try_from(o).ok())
        .unwrap_or(0)
}

/// Where the line holding `s` starts (a key's indentation, a list item's `- `).
fn line_start<T>(text: &str, s: &Spanned<T>) -> usize {
    let at = offset(s).min(text.len());
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// `text` with every character outside `start..end` blanked: line breaks stay, so the section
/// keeps its own lines and columns and parses as the node it is.
fn only(text: &str, start: usize, end: usize) -> String {
    text.char_indices()
        .map(|(i, c)| match c {
            '\n' | '\r' => c,
            _ if (start..end).contains(&i) => c,
            _ => ' ',
        })
        .collect()
}
