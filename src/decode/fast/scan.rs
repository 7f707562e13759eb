//! The fast path's own JSON reader: walks a message's bytes once and appends each value to its
//! column, or gives up (`None`) at the first thing the fast path does not take.
//!
//! It reads exactly the JSON that serde_json reads (RFC 8259: no comments, no trailing commas, no
//! leading zeros, UTF-8 only, no lone surrogates) and reads numbers as serde_json does, so a message
//! it takes would have the same values on the general path:
//! - an integer literal is a `u64` when it fits, else a negative one an `i64` when it fits (`-0` is
//!   the double `-0.0`), else a double;
//! - any other number is the double nearest to its text (serde_json's `float_roundtrip`), and a
//!   number beyond the double range is an error there, so it is refused here.
//!
//! What a column takes is decided in one place, [`Col`]'s `take_*` methods, so this file is only
//! about bytes.

use std::borrow::Cow;
use std::collections::HashSet;

use super::{Col, StructCol};

/// Reads `bytes` as one JSON object into the columns of `root`. `None`: refused (the caller
/// truncates the columns back).
pub(super) fn message(bytes: &[u8], root: &mut StructCol) -> Option<()> {
    let mut r = Reader { b: bytes, i: 0 };
    if r.peek()? != b'{' {
        return None;
    }
    r.i += 1;
    r.object(root)?;
    r.skip_ws();
    (r.i == bytes.len()).then_some(())
}

/// A number as serde_json would hand it on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    /// Consumes `lit` when the bytes start with it.
    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        let end = self.i + lit.len();
        (self.b.get(self.i..end)? == lit).then(|| self.i = end)
    }

    /// Just inside a container: true (and `close` consumed) when it is empty.
    #[inline(always)]
    fn empty(&mut self, close: u8) -> Option<bool> {
        let empty = self.peek()? == close;
        self.i += usize::from(empty);
        Some(empty)
    }

    /// After a member or item: true past a comma (another follows), false past `close`.
    #[inline(always)]
    fn more(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(true)
            }
            c if c == close => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// An object's key and the colon after it.
    #[inline(always)]
    fn key(&mut self) -> Option<Cow<'a, str>> {
        if self.peek()? != b'"' {
            return None;
        }
        let key = self.string()?;
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        Some(key)
    }

    /// The rest of an object whose `{` was consumed, into `s`.
    fn object(&mut self, s: &mut StructCol) -> Option<()> {
        let n = s.cols.len();
        // Which fields were seen: a repeated key goes to the general path (serde_json keeps the
        // last value), and a field not seen is null.
        let mut seen_small = 0u128;
        let mut seen_large = if n > 128 { vec![false; n] } else { Vec::new() };
        let mut k = 0;
        if !self.empty(b'}')? {
            loop {
                let key = self.key()?;
                let i = s.keys.find(&key, k)?;
                k += 1;
                let repeated = if n > 128 {
                    std::mem::replace(&mut seen_large[i], true)
                } else {
                    let bit = 1u128 << i;
                    let was = seen_small & bit != 0;
                    seen_small |= bit;
                    was
                };
                if repeated {
                    return None;
                }
                self.value(&mut s.cols[i], s.nullable[i])?;
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        if k < n {
            for (i, (col, &nullable)) in s.cols.iter_mut().zip(&s.nullable).enumerate() {
                let seen = if n > 128 { seen_large[i] } else { seen_small & 1 << i != 0 };
                if !seen {
                    if !nullable {
                        return None;
                    }
                    col.push_null();
                }
            }
        }
        s.nulls.push(true);
        Some(())
    }

    /// One value into `col`.
    fn value(&mut self, col: &mut Col, nullable: bool) -> Option<()> {
        match self.peek()? {
            b'n' => {
                self.literal(b"null")?;
                if !nullable {
                    return None;
                }
                col.push_null();
                Some(())
            }
            b't' => {
                self.literal(b"true")?;
                col.take_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                col.take_bool(false)
            }
            b'"' => {
                let s = self.string()?;
                col.take_str(&s)
            }
            b'-' | b'0'..=b'9' => {
                let n = self.number()?;
                col.take_number(n)
            }
            b'[' => {
                self.i += 1;
                let Col::List(l) = col else { return None };
                let mut len = 0;
                if !self.empty(b']')? {
                    loop {
                        self.value(&mut l.item, l.item_nullable)?;
                        len += 1;
                        if !self.more(b']')? {
                            break;
                        }
                    }
                }
                l.close(len)
            }
            b'{' => {
                self.i += 1;
                match col {
                    Col::Struct(s) => self.object(s),
                    Col::Map(m) => {
                        // Map keys are data: a repeated one is kept once by serde_json; send it there.
                        let mut keys: HashSet<Cow<'a, str>> = HashSet::new();
                        let mut len = 0;
                        if !self.empty(b'}')? {
                            loop {
                                let key = self.key()?;
                                if !m.keys.push_value(key.as_bytes()) || !keys.insert(key) {
                                    return None;
                                }
                                self.value(&mut m.values, m.values_nullable)?;
                                len += 1;
                                if !self.more(b'}')? {
                                    break;
                                }
                            }
                        }
                        m.close(len)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A string whose opening quote is the next byte. Borrowed unless it has escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let b = self.b;
        let start = self.i + 1;
        let mut j = start;
        loop {
            match *b.get(j)? {
                b'"' => break,
                b'\\' => return self.escaped(start),
                0..=0x1f => return None,
                _ => j += 1,
            }
        }
        self.i = j + 1;
        std::str::from_utf8(&b[start..j]).ok().map(Cow::Borrowed)
    }

    /// The slow path of [`string`](Self::string): a string with escapes, from `start` (after its
    /// opening quote).
    fn escaped(&mut self, start: usize) -> Option<Cow<'a, str>> {
        let b = self.b;
        let mut out = Vec::new();
        let mut j = start;
        loop {
            match *b.get(j)? {
                b'"' => break,
                b'\\' => {
                    j += 1;
                    match *b.get(j)? {
                        c @ (b'"' | b'\\' | b'/') => out.push(c),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hi = hex4(b.get(j + 1..j + 5)?)?;
                            j += 4;
                            let c = match hi {
                                0xD800..=0xDBFF => {
                                    // A high surrogate must be followed by an escaped low one.
                                    if b.get(j + 1..j + 3)? != b"\\u" {
                                        return None;
                                    }
                                    let lo = hex4(b.get(j + 3..j + 7)?)?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return None;
                                    }
                                    j += 6;
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => char::from_u32(hi)?,
                            };
                            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        _ => return None,
                    }
                    j += 1;
                }
                0..=0x1f => return None,
                c => {
                    out.push(c);
                    j += 1;
                }
            }
        }
        self.i = j + 1;
        String::from_utf8(out).ok().map(Cow::Owned)
    }

    /// A number starting at the next byte, by JSON's grammar.
    fn number(&mut self) -> Option<Number> {
        let b = self.b;
        let start = self.i;
        let negative = b[start] == b'-';
        let mut j = start + usize::from(negative);
        let digits = j;
        match *b.get(j)? {
            b'0' => j += 1,
            b'1'..=b'9' => j = digits_end(b, j),
            _ => return None,
        }
        let int_end = j;
        let mut fraction = 0;
        if b.get(j) == Some(&b'.') {
            let from = j + 1;
            j = digits_end(b, from);
            if j == from {
                return None;
            }
            fraction = j - from;
        }
        let exponent = j;
        if let Some(b'e' | b'E') = b.get(j) {
            let mut from = j + 1;
            if let Some(b'+' | b'-') = b.get(from) {
                from += 1;
            }
            j = digits_end(b, from);
            if j == from {
                return None;
            }
        }
        self.i = j;
        // ASCII digits, signs, dots and exponents only.
        let text = std::str::from_utf8(&b[start..j]).ok()?;
        if j == int_end {
            let magnitude =
                b[digits..j].iter().try_fold(0u64, |m, d| m.checked_mul(10)?.checked_add(u64::from(d - b'0')));
            match (magnitude, negative) {
                (Some(m), false) => return Some(Number::U64(m)),
                (Some(m), true) => {
                    // As serde_json: `-0`, and magnitudes past i64's, are doubles.
                    let n = (m as i64).wrapping_neg();
                    return Some(if n < 0 { Number::I64(n) } else { Number::F64(-(m as f64)) });
                }
                (None, _) => {}
            }
        }
        // Most readings have few digits and no exponent: their digits as an integer and ten to
        // the number of decimals are both exact doubles, so one division rounds correctly.
        let digit_count = int_end - digits + fraction;
        if j == exponent && digit_count <= 15 && fraction <= 22 {
            let m = b[digits..j].iter().filter(|d| d.is_ascii_digit()).fold(0u64, |m, d| m * 10 + u64::from(d - b'0'));
            let v = m as f64 / POW10[fraction];
            return Some(Number::F64(if negative { -v } else { v }));
        }
        let v: f64 = text.parse().ok()?;
        v.is_finite().then_some(Number::F64(v))
    }
}

/// Ten to the powers a double holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Where the run of ASCII digits from `j` ends.
#[inline(always)]
fn digits_end(b: &[u8], mut j: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(j) {
        j += 1;
    }
    j
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + (d as char).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Option<Number> {
        let mut r = Reader { b: text.as_bytes(), i: 0 };
        let n = r.number()?;
        (r.i == text.len()).then_some(n)
    }

    /// Numbers come out as serde_json (with `float_roundtrip`) reads them.
    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        for text in [
            "0",
            "-0",
            "7",
            "-7",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1.5",
            "-0.0",
            "1e3",
            "1E+3",
            "2.5e-3",
            "985.6906946328695",
            "1e-400",
            "123456789012345678901234567890",
            "0.1",
            "-0.3",
            "18.05",
            "229.9",
            "0.000000000000001",
            "999999999999999.9",
            "12345.678901234",
            "1234567890123456.5",
        ] {
            let ours = number(text).unwrap_or_else(|| panic!("{text} refused"));
            let serde = match serde_json::from_str::<serde_json::Number>(text).unwrap() {
                n if n.is_u64() => Number::U64(n.as_u64().unwrap()),
                n if n.is_i64() => Number::I64(n.as_i64().unwrap()),
                n => Number::F64(n.as_f64().unwrap()),
            };
            match (ours, serde) {
                (Number::F64(a), Number::F64(b)) => assert_eq!(a.to_bits(), b.to_bits(), "{text}"),
                (a, b) => assert_eq!(a, b, "{text}"),
            }
        }
        for text in ["01", "-", "1.", ".5", "+1", "1e", "1e+", "-a", "1e400", "-1e400"] {
            assert_eq!(number(text), None, "{text}");
            assert!(serde_json::from_str::<serde_json::Number>(text).is_err(), "{text}");
        }
    }

    proptest::proptest! {
        /// Short decimals take the division shortcut, long ones the full parser: both land on
        /// the double serde_json reads.
        #[test]
        fn decimals_read_as_serde_json_reads_them(int in 0u64..10_000_000_000, fraction in "[0-9]{1,12}", negative: bool, exp in proptest::option::of(-30i32..30)) {
            let text = format!("{}{int}.{fraction}{}", if negative { "-" } else { "" }, exp.map(|e| format!("e{e}")).unwrap_or_default());
            let serde = serde_json::from_str::<f64>(&text).unwrap();
            proptest::prop_assert_eq!(number(&text), Some(Number::F64(serde)), "{}", text);
        }
    }

    /// Strings with escapes decode as serde_json decodes them; what it refuses is refused.
    #[test]
    fn strings_read_as_serde_json_reads_them() {
        let read = |text: &str| {
            let mut r = Reader { b: text.as_bytes(), i: 0 };
            let s = r.string()?.into_owned();
            (r.i == text.len()).then_some(s)
        };
        for text in [
            r#""plain""#,
            r#""a\"b\\c\/d\b\f\n\r\t""#,
            r#""\u00e9\u20AC\ud83d\ude00""#,
            "\"caf\u{e9}\"",
            r#""""#,
            r#""\u0000""#,
        ] {
            assert_eq!(read(text), Some(serde_json::from_str::<String>(text).unwrap()), "{text}");
        }
        for text in [r#""\ud83d""#, r#""\ude00""#, r#""\ud83dx""#, r#""\x""#, r#""\u12""#, "\"a\tb\"", r#""open"#] {
            assert_eq!(read(text), None, "{text}");
            assert!(serde_json::from_str::<String>(text).is_err(), "{text}");
        }
    }
}
