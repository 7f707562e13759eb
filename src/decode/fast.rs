//! The fast path of JSON decoding: proves, without allocating, that a message's bytes can go
//! to arrow_json as they are.
//!
//! The general path parses each message into a `serde_json::Value`, renames keys, fits numbers
//! and nested objects to the schema ([`super::fit`]) and serializes the values into arrow_json.
//! That costs several allocations per field. Almost every message of a settled topic needs none
//! of that work: its keys are all columns, its integers are whole and in range, its strings are
//! strings. For such a message arrow_json's own tokenizer, fed the raw bytes, builds the same
//! columns.
//!
//! [`Plan::admits`] walks a message once, directed by the Arrow schema, and says yes only when
//! every value is of a kind the general path would hand to arrow_json unchanged:
//!
//! | column type              | admitted values              |
//! |--------------------------|------------------------------|
//! | `Int32`, `Int64`         | integer literals in range    |
//! | `Float32`, `Float64`     | numbers                      |
//! | `Utf8`, `LargeUtf8`      | strings                      |
//! | `Boolean`                | booleans                     |
//! | `Timestamp`              | strings (RFC 3339)           |
//! | struct                   | objects with known keys, none repeated |
//! | list                     | arrays of admitted items     |
//! | map                      | objects of admitted values, no key repeated |
//! | any                      | `null`                       |
//!
//! Anything else (a key the schema lacks, a top-level key spelled like a meta column, a float in
//! an integer column, a number in a timestamp column, an object in a string column, a repeated
//! key, invalid JSON) sends the message down the general path, which decides what becomes of it.
//! So the fast path changes how fast a row is decoded, never what is decoded, with one
//! refinement: a float column's numbers reach arrow_json as their text, and it rounds them
//! correctly; the general path parses them with serde_json first, which may be one unit in the
//! last place off for numbers with many digits.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use arrow_schema::{DataType, Fields};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// What a value of one column may be, for the fast path.
#[derive(Debug)]
enum Kind {
    Int { lo: i64, hi: i64 },
    Float,
    Str,
    Bool,
    Timestamp,
    Struct(Struct),
    List(Box<Kind>),
    Map(Box<Kind>),
    /// Any other type: only `null` is admitted.
    Other,
}

#[derive(Debug)]
struct Struct {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, usize>,
    /// The field of the k-th key of the last object seen: producers write keys in the same
    /// order every time, so a key is usually found with one comparison, without hashing.
    guess: Vec<Cell<usize>>,
    kinds: Vec<Kind>,
    /// The top level: keys spelled like meta columns are renamed by the general path.
    top: bool,
}

/// The fast-path check for one Arrow schema (the user columns of a table).
#[derive(Debug)]
pub(super) struct Plan {
    root: Struct,
}

impl Plan {
    pub(super) fn new(fields: &Fields) -> Plan {
        Plan { root: Struct::new(fields, true) }
    }

    /// True when `bytes` is one JSON object that arrow_json decodes into this schema exactly as
    /// the general path would.
    pub(super) fn admits(&self, bytes: &[u8]) -> bool {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        Check(&self.root).deserialize(&mut de).is_ok() && de.end().is_ok()
    }
}

impl Struct {
    fn new(fields: &Fields, top: bool) -> Struct {
        Struct {
            names: fields.iter().map(|f| Box::from(f.name().as_str())).collect(),
            index: fields.iter().enumerate().map(|(i, f)| (Box::from(f.name().as_str()), i)).collect(),
            guess: (0..fields.len()).map(Cell::new).collect(),
            kinds: fields.iter().map(|f| Kind::of(f.data_type())).collect(),
            top,
        }
    }
}

impl Kind {
    fn of(dt: &DataType) -> Kind {
        match dt {
            DataType::Int32 => Kind::Int { lo: i32::MIN.into(), hi: i32::MAX.into() },
            DataType::Int64 => Kind::Int { lo: i64::MIN, hi: i64::MAX },
            DataType::Float32 | DataType::Float64 => Kind::Float,
            DataType::Utf8 | DataType::LargeUtf8 => Kind::Str,
            DataType::Boolean => Kind::Bool,
            DataType::Timestamp(..) => Kind::Timestamp,
            DataType::Struct(fields) => Kind::Struct(Struct::new(fields, false)),
            DataType::List(f) | DataType::LargeList(f) => Kind::List(Box::new(Kind::of(f.data_type()))),
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(kv) if kv.len() == 2 && kv[0].data_type() == &DataType::Utf8 => {
                    Kind::Map(Box::new(Kind::of(kv[1].data_type())))
                }
                _ => Kind::Other,
            },
            _ => Kind::Other,
        }
    }
}

/// Not for the fast path. The reason is never shown: the general path finds its own.
fn no<E: de::Error>() -> E {
    E::custom("")
}

struct Check<'p>(&'p Struct);

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(ObjectVisitor(self.0))
    }
}

struct ObjectVisitor<'p>(&'p Struct);

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let s = self.0;
        // Which fields were seen: a repeated key goes to the general path (serde_json keeps
        // the last value; what arrow_json's tokenizer would keep is not promised).
        let mut seen_small = 0u128;
        let mut seen_large = if s.kinds.len() > 128 { vec![false; s.kinds.len()] } else { Vec::new() };
        let mut k = 0;
        while let Some(i) = map.next_key_seed(Key(s, k))? {
            k += 1;
            if s.kinds.len() > 128 {
                if std::mem::replace(&mut seen_large[i], true) {
                    return Err(no());
                }
            } else {
                if seen_small & (1 << i) != 0 {
                    return Err(no());
                }
                seen_small |= 1 << i;
            }
            map.next_value_seed(Value(&s.kinds[i]))?;
        }
        Ok(())
    }
}

/// The `k`-th key of an object of a struct: its field's index, or not for the fast path.
struct Key<'p>(&'p Struct, usize);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = usize;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<usize, E> {
        let (s, k) = (self.0, self.1);
        if let Some(g) = s.guess.get(k)
            && *s.names[g.get()] == *key
        {
            return Ok(g.get());
        }
        if s.top && super::names::escape(key) != key {
            return Err(no());
        }
        let i = s.index.get(key).copied().ok_or_else(no)?;
        if let Some(g) = s.guess.get(k) {
            g.set(i);
        }
        Ok(i)
    }
}

struct Value<'p>(&'p Kind);

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Not `deserialize_ignored_any`, even where the value does not matter: skipping a value
        // checks less than parsing it (a number beyond f64, bad UTF-8 in a string), and the
        // general path refuses what parsing refuses.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the column's type")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        matches!(self.0, Kind::Bool).then_some(()).ok_or_else(no)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match self.0 {
            Kind::Int { lo, hi } if (*lo..=*hi).contains(&v) => Ok(()),
            Kind::Float => Ok(()),
            _ => Err(no()),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match self.0 {
            Kind::Int { hi, .. } if v <= *hi as u64 => Ok(()),
            Kind::Float => Ok(()),
            _ => Err(no()),
        }
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        matches!(self.0, Kind::Float).then_some(()).ok_or_else(no)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        matches!(self.0, Kind::Str | Kind::Timestamp).then_some(()).ok_or_else(no)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Kind::List(item) = self.0 else { return Err(no()) };
        while seq.next_element_seed(Value(item))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.0 {
            Kind::Struct(s) => ObjectVisitor(s).visit_map(map),
            Kind::Map(value) => {
                // Map keys are data: a repeated one is kept once by serde_json; send it there.
                let mut keys = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if !keys.insert(key) {
                        return Err(no());
                    }
                    map.next_value_seed(Value(value))?;
                }
                Ok(())
            }
            _ => Err(no()),
        }
    }
}
