//! routes.yaml text → raw types, reporting every problem: when the whole file does not
//! deserialize, each top-level key, each channel and each rule is deserialized on its own, so one
//! bad section does not hide the others. Every problem names the field path and its line:column.

use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::raw::{RawChannel, RawConfig, RawRule};
use super::Problem;
use crate::channels::registry;

/// What parsed, with every problem found.
pub(super) struct Parsed {
    /// The sections that parsed (a bad channel or rule is left out).
    pub raw: RawConfig,
    /// Every channel name written, including those whose definition has problems.
    pub channel_names: Vec<String>,
    /// The `channels` section is missing or unreadable (already reported as a problem).
    pub channels_unreadable: bool,
}

/// Parses the whole file; on failure, section by section.
pub(super) fn parse_sections(text: &str) -> (Option<Parsed>, Vec<Problem>) {
    let first = match whole(text) {
        Ok(raw) => {
            let channel_names = raw.channels.keys().cloned().collect();
            return (
                Some(Parsed {
                    raw,
                    channel_names,
                    channels_unreadable: false,
                }),
                Vec::new(),
            );
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
    let mut channels_unreadable = false;
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
                        channels_unreadable = true;
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
                    match channel(&only(text, offset(def), end), &path) {
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
        channels_unreadable = true;
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
    let parsed = Parsed {
        raw,
        channel_names,
        channels_unreadable,
    };
    (Some(parsed), problems)
}

/// The whole file in two passes: each channel's `kind`, then the file with each channel read as
/// its kind's settings.
fn whole(text: &str) -> Result<RawConfig, Problem> {
    let kinds = deserialize::<Kinds>(text, "")?;
    kinds.channels.values().try_for_each(known)?;
    deserialize_seed(text, "", FileSeed(&kinds.channels))
}

/// One channel's section in two passes: its `kind`, then its kind's settings.
fn channel(section: &str, path: &str) -> Result<RawChannel, Problem> {
    let tag = deserialize::<KindTag>(section, path)?;
    known(&tag)?;
    deserialize_seed(section, path, KindSeed(&tag.kind.value))
}

/// A kind payroute speaks, or the problem at `kind:`.
fn known(tag: &KindTag) -> Result<(), Problem> {
    match registry::KINDS.contains(&tag.kind.value.as_str()) {
        true => Ok(()),
        false => Err(crate::channels::settings::problem::at(
            &tag.kind,
            registry::unknown_kind(&tag.kind.value),
        )),
    }
}

/// The first pass: each channel's `kind`, every other key skipped.
#[derive(Deserialize)]
struct Kinds {
    #[serde(default)]
    channels: IndexMap<String, KindTag>,
}

#[derive(Deserialize)]
struct KindTag {
    kind: Spanned<String>,
}

/// The top-level keys.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum TopKey {
    Channels,
    Rules,
    RefundDuplicates,
}

/// The second pass over the whole file, knowing each channel's kind.
struct FileSeed<'a>(&'a IndexMap<String, KindTag>);

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = RawConfig;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawConfig, D::Error> {
        d.deserialize_struct(
            "RawConfig",
            &["channels", "rules", "refund_duplicates"],
            self,
        )
    }
}

impl<'de> serde::de::Visitor<'de> for FileSeed<'_> {
    type Value = RawConfig;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawConfig, A::Error> {
        let (mut channels, mut rules, mut refund_duplicates) = (None, None, None);
        while let Some(key) = m.next_key::<TopKey>()? {
            match key {
                TopKey::Channels => channels = Some(m.next_value_seed(ChannelsSeed(self.0))?),
                TopKey::Rules => rules = Some(m.next_value::<Vec<RawRule>>()?),
                TopKey::RefundDuplicates => refund_duplicates = Some(m.next_value::<bool>()?),
            }
        }
        Ok(RawConfig {
            channels: channels.ok_or_else(|| serde::de::Error::missing_field("channels"))?,
            rules: rules.unwrap_or_default(),
            refund_duplicates: refund_duplicates.unwrap_or(true),
        })
    }
}

/// The channels, each read as its kind's settings.
struct ChannelsSeed<'a>(&'a IndexMap<String, KindTag>);

impl<'de> DeserializeSeed<'de> for ChannelsSeed<'_> {
    type Value = IndexMap<String, RawChannel>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ChannelsSeed<'_> {
    type Value = IndexMap<String, RawChannel>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping of channels by name")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut out = IndexMap::new();
        while let Some(name) = m.next_key::<String>()? {
            let kind = self.0.get(&name).map_or("", |t| t.kind.value.as_str());
            let ch = m.next_value_seed(KindSeed(kind))?;
            out.insert(name, ch);
        }
        Ok(out)
    }
}

/// A channel of a known kind.
struct KindSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KindSeed<'_> {
    type Value = RawChannel;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawChannel, D::Error> {
        registry::deserialize(self.0, d)
    }
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
    deserialize_seed(text, prefix, PhantomData::<T>)
}

/// [`deserialize`] with a seed.
fn deserialize_seed<T, S>(text: &str, prefix: &str, seed: S) -> Result<T, Problem>
where
    S: for<'de> DeserializeSeed<'de, Value = T>,
{
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        let mut track = serde_path_to_error::Track::new();
        seed.deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
            .inspect_err(|_| path = track.path().to_string())
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
