//! Reads a parsed JSON [`Value`] into a `Deserialize` type, with errors that name the
//! field: `connections.opened missing or not a whole number`, as a person fixing the
//! file needs them (serde_json's own say only "invalid type: string, expected u64").
//!
//! One rule differs from serde_json's: a field the type declares but the file lacks is
//! read as `null`. An `Option` then reads as `None`, and a required number fails with
//! the message above, which says what was expected. So `#[serde(default)]` alone does
//! not default here; a field with a default also needs `deserialize_with =
//! "or_default"` (see [`or_default`]), which reads `null` as the default too.

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_json::Value;

/// `v` as a `T`, or the message of the first field that does not fit.
pub(crate) fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    T::deserialize(At { value: v, path: String::new() }).map_err(|e| e.0.to_string())
}

/// For `deserialize_with`: `null` (or a field left out) reads as the default.
pub(crate) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A deserialization error; [`At`] names the field once the error passes through it.
#[derive(Debug)]
pub(crate) struct Error(Message);

#[derive(Debug)]
enum Message {
    /// A value of the wrong kind: what was expected, in words.
    Expected(String),
    /// Anything else a `Deserialize` impl reported, not yet placed.
    Other(String),
    /// The final text, with the field's name.
    Placed(String),
}

impl Error {
    /// The error as it reads at `path`, unless a field further in placed it already.
    fn at(self, path: &str) -> Error {
        let path = if path.is_empty() { "the file" } else { path };
        Error(match self.0 {
            Message::Expected(what) => Message::Placed(format!("{path} missing or not {what}")),
            Message::Other(msg) => Message::Placed(format!("{path}: {msg}")),
            placed @ Message::Placed(_) => placed,
        })
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Expected(what) => write!(f, "not {what}"),
            Message::Other(text) | Message::Placed(text) => f.write_str(text),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(Message::Other(msg.to_string()))
    }

    fn invalid_type(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error(Message::Expected(in_words(expected)))
    }

    fn invalid_value(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error(Message::Expected(in_words(expected)))
    }
}

/// serde's name for an expected value (`u64`, `a map`, `struct Steady`) in the words of
/// the messages.
fn in_words(expected: &dyn de::Expected) -> String {
    let name = expected.to_string();
    match name.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" | "a tuple of size 2" => "a list".into(),
        "a map" => "an object".into(),
        _ if name.starts_with("struct ") => "an object".into(),
        _ => name,
    }
}

/// The value at `path` (`steady.ticks`, `timeline[3].t`; empty for the whole file).
struct At<'de> {
    value: &'de Value,
    path: String,
}

impl<'de> At<'de> {
    fn field(&self, value: &'de Value, name: &str) -> At<'de> {
        let path =
            if self.path.is_empty() { name.to_string() } else { format!("{}.{name}", self.path) };
        At { value, path }
    }
}

impl<'de> Deserializer<'de> for At<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, Some(f)) => visitor.visit_f64(f),
                (None, None, None) => Err(de::Error::custom("a number out of range")),
            },
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                visitor.visit_seq(Elements { at: &self, items: items.iter(), i: 0 })
            }
            Value::Object(map) => {
                visitor.visit_map(Entries { at: &self, entries: map.iter(), next: None })
            }
        };
        result.map_err(|e| e.at(&self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// Every declared field is visited, `null` when the file lacks it (see the module doc).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Only an object: serde would also take a struct from a list of its values.
        let Value::Object(map) = self.value else {
            let found = de::Unexpected::Other("no object");
            return Err(<Error as de::Error>::invalid_type(found, &visitor).at(&self.path));
        };
        let fields = Fields { at: &self, map, names: fields.iter(), next: None };
        visitor.visit_map(fields).map_err(|e| e.at(&self.path))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// An array's items, each named by its index.
struct Elements<'a, 'de> {
    at: &'a At<'de>,
    items: std::slice::Iter<'de, Value>,
    i: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(value) = self.items.next() else { return Ok(None) };
        let path = format!("{}[{}]", self.at.path, self.i);
        self.i += 1;
        seed.deserialize(At { value, path }).map(Some)
    }
}

/// An object's entries as they are in the file (for maps).
struct Entries<'a, 'de> {
    at: &'a At<'de>,
    entries: serde_json::map::Iter<'de>,
    next: Option<(&'de String, &'de Value)>,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        self.next = self.entries.next();
        let Some((key, _)) = self.next else { return Ok(None) };
        seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let (key, value) = self.next.ok_or_else(|| de::Error::custom("a value before its key"))?;
        seed.deserialize(self.at.field(value, key))
    }
}

/// A struct's declared fields, in declaration order, each `null` when the file lacks it.
struct Fields<'a, 'de> {
    at: &'a At<'de>,
    map: &'de serde_json::Map<String, Value>,
    names: std::slice::Iter<'static, &'static str>,
    next: Option<&'static str>,
}

static NULL: Value = Value::Null;

impl<'de> de::MapAccess<'de> for Fields<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        self.next = self.names.next().copied();
        let Some(name) = self.next else { return Ok(None) };
        seed.deserialize(BorrowedStrDeserializer::new(name)).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let name = self.next.ok_or_else(|| de::Error::custom("a value before its key"))?;
        seed.deserialize(self.at.field(self.map.get(name).unwrap_or(&NULL), name))
    }
}
