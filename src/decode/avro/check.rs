//! A walk over an Avro binary body that checks it is one whole, well-formed value of its schema
//! before any of it reaches the Arrow decoder. arrow-avro decodes straight into column builders,
//! so a truncated or corrupt record would leave half a row behind; checked first, a bad record
//! is refused alone (a dead letter with the reason) and its neighbours decode as usual.

use super::schema::{Avro, TimeUnit};

/// Checks that `body` is exactly one value of `schema`; the error says where it went wrong.
pub fn check(schema: &Avro, body: &[u8]) -> Result<(), String> {
    let mut c = Cursor { buf: body, pos: 0 };
    value(schema, &mut c)?;
    match body.len() - c.pos {
        0 => Ok(()),
        n => Err(format!("{n} bytes left over after the record")),
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| {
            format!("truncated: {n} bytes needed at byte {}, {} left", self.pos, self.buf.len() - self.pos)
        })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self
                .take(1)
                .map_err(|_| format!("truncated: a number runs past the end at byte {}", self.pos))?
                .first()
                .expect("one byte");
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("a number longer than 10 bytes at byte {}", self.pos))
    }

    fn long(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn int(&mut self) -> Result<i32, String> {
        let at = self.pos;
        let v = u32::try_from(self.varint()?).map_err(|_| format!("an int out of range at byte {at}"))?;
        Ok((v >> 1) as i32 ^ -((v & 1) as i32))
    }

    fn len(&mut self, what: &str) -> Result<usize, String> {
        let at = self.pos;
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("{what} of negative length {n} at byte {at}"))
    }

    fn index(&mut self, what: &str, count: usize, long: bool) -> Result<usize, String> {
        let at = self.pos;
        let i = if long { self.long()? } else { i64::from(self.int()?) };
        usize::try_from(i)
            .ok()
            .filter(|i| *i < count)
            .ok_or_else(|| format!("{what} index {i} out of range (0..{count}) at byte {at}"))
    }
}

fn value(t: &Avro, c: &mut Cursor<'_>) -> Result<(), String> {
    match t {
        Avro::Null => {}
        Avro::Boolean => {
            c.take(1)?;
        }
        Avro::Int | Avro::Date | Avro::Time(TimeUnit::Millis) => {
            c.int()?;
        }
        Avro::Long | Avro::Time(_) | Avro::Timestamp { .. } => {
            c.long()?;
        }
        Avro::Float => {
            c.take(4)?;
        }
        Avro::Double => {
            c.take(8)?;
        }
        Avro::Bytes => {
            let n = c.len("bytes")?;
            c.take(n)?;
        }
        Avro::String => {
            let n = c.len("a string")?;
            let at = c.pos;
            std::str::from_utf8(c.take(n)?).map_err(|e| format!("a string at byte {at} is not UTF-8 ({e})"))?;
        }
        Avro::Uuid { fixed: true } => {
            c.take(16)?;
        }
        Avro::Uuid { fixed: false } => {
            let n = c.len("a uuid")?;
            let at = c.pos;
            let text = c.take(n)?;
            uuid::Uuid::try_parse_ascii(text).map_err(|e| format!("the uuid at byte {at} is not one ({e})"))?;
        }
        Avro::Decimal { fixed: Some(n), .. } | Avro::Fixed(n) => {
            c.take(*n)?;
        }
        Avro::Decimal { fixed: None, .. } => {
            let at = c.pos;
            let n = c.len("a decimal")?;
            if n > 16 {
                return Err(format!("a decimal of {n} bytes at byte {at} (at most 16 hold 38 digits)"));
            }
            c.take(n)?;
        }
        Avro::Enum(symbols) => {
            c.index("enum symbol", *symbols, false)?;
        }
        Avro::Union(branches) => {
            let i = c.index("union branch", branches.len(), true)?;
            value(&branches[i], c)?;
        }
        Avro::Record(fields) => {
            for f in fields {
                value(&f.ty, c).map_err(|e| format!("{}: {e}", f.name))?;
            }
        }
        Avro::Array(items) => blocks(c, "array", |c| value(items, c), zero_sized(items))?,
        Avro::Map(values) => blocks(
            c,
            "map",
            |c| {
                value(&Avro::String, c)?;
                value(values, c)
            },
            false,
        )?,
    }
    Ok(())
}

/// Array and map items come in blocks: a count (negative: followed by the block's byte size),
/// the items, and a zero count at the end.
fn blocks(
    c: &mut Cursor<'_>,
    what: &str,
    mut item: impl FnMut(&mut Cursor<'_>) -> Result<(), String>,
    zero_sized: bool,
) -> Result<(), String> {
    loop {
        let at = c.pos;
        let mut count = c.long()?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            count = count.checked_neg().ok_or_else(|| format!("{what} block count out of range at byte {at}"))?;
            c.long()?;
        }
        // Each item takes at least a byte, unless it is all nulls: bound those so a corrupt
        // count cannot make the decoder allocate without end.
        let left = (c.buf.len() - c.pos) as i64;
        if (!zero_sized && count > left) || count > (1 << 20).max(left) {
            return Err(format!(
                "truncated or corrupt: {what} block of {count} items at byte {at} with {left} bytes left"
            ));
        }
        for _ in 0..count {
            item(c)?;
        }
    }
}

fn zero_sized(t: &Avro) -> bool {
    match t {
        Avro::Null => true,
        Avro::Record(fields) => fields.iter().all(|f| zero_sized(&f.ty)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::parse;
    use super::*;

    /// Zig-zag varint, as Avro writes `int` and `long`.
    pub(crate) fn long(v: i64) -> Vec<u8> {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn schema() -> Avro {
        parse(
            r#"{"type":"record","name":"R","fields":[
            {"name":"id","type":"long"},
            {"name":"name","type":["null","string"]},
            {"name":"tags","type":{"type":"array","items":"int"}}
        ]}"#,
        )
        .unwrap()
    }

    fn good() -> Vec<u8> {
        let mut b = long(42);
        b.extend(long(1)); // union branch 1: string
        b.extend(long(2));
        b.extend(b"hi");
        b.extend(long(-2)); // a block of 2 items with its byte size
        b.extend(long(2));
        b.extend(long(7));
        b.extend(long(-7));
        b.extend(long(0));
        b
    }

    #[test]
    fn accepts_a_whole_record() {
        check(&schema(), &good()).unwrap();
        let mut null_name = long(1);
        null_name.extend(long(0));
        null_name.extend(long(0));
        check(&schema(), &null_name).unwrap();
    }

    #[test]
    fn names_what_is_wrong_and_where() {
        let s = schema();
        let g = good();
        for cut in 0..g.len() {
            let e = check(&s, &g[..cut]).unwrap_err();
            assert!(e.contains("truncated"), "cut at {cut}: {e}");
        }
        let mut extra = g.clone();
        extra.push(0);
        assert_eq!(check(&s, &extra).unwrap_err(), "1 bytes left over after the record");
        let mut branch = long(1);
        branch.extend(long(5));
        assert!(check(&s, &branch).unwrap_err().starts_with("name: union branch index 5 out of range"));
        let mut utf = long(1);
        utf.extend(long(1));
        utf.extend(long(1));
        utf.push(0xff);
        assert!(check(&s, &utf).unwrap_err().contains("not UTF-8"));
        let mut huge = long(1);
        huge.extend(long(0));
        huge.extend(long(1 << 40));
        assert!(check(&s, &huge).unwrap_err().starts_with("tags: truncated or corrupt: array block of"));
        assert!(check(&s, &[0xff; 11]).unwrap_err().contains("longer than 10 bytes"));
    }

    #[test]
    fn logical_types_check_their_values() {
        let s = parse(
            r#"{"type":"record","name":"R","fields":[
            {"name":"u","type":{"type":"string","logicalType":"uuid"}},
            {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":38,"scale":0}}
        ]}"#,
        )
        .unwrap();
        let uuid = b"0b8c5f4e-3c1a-4d7e-9a65-2f1d3e4c5b6a";
        let mut ok = long(uuid.len() as i64);
        ok.extend(uuid);
        ok.extend(long(1));
        ok.push(7);
        check(&s, &ok).unwrap();
        let mut bad = long(3);
        bad.extend(b"xyz");
        assert!(check(&s, &bad).unwrap_err().starts_with("u: the uuid at byte 1 is not one"));
        let mut wide = long(uuid.len() as i64);
        wide.extend(uuid);
        wide.extend(long(17));
        wide.extend([1; 17]);
        assert!(check(&s, &wide).unwrap_err().contains("a decimal of 17 bytes"));
    }
}
