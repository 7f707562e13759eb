//! The Confluent wire format of a Protobuf value: magic byte 0, the schema's 4-byte big-endian id
//! in a schema registry, then the message indexes that name the message type within the schema's
//! file, then the message's Protobuf body.
//!
//! The indexes are zigzag varints (Kafka's `ByteUtils.writeVarint`): their count, then each one.
//! The first index picks one of the file's top-level messages, each next one a message nested in
//! the one before. `[0]`, the file's first message, is the common case and is written as one
//! byte: a count of 0 (Confluent's `MessageIndexes`); its long form (count 1, index 0) reads the
//! same.

/// The most indexes a value may name: deeper nesting than this is not a schema, it is damage.
const MAX_INDEXES: usize = 64;

/// A framed value, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub schema_id: u32,
    /// The path to the message type: a top-level message of the schema's file, then nested ones.
    pub indexes: Vec<i32>,
    pub body: &'a [u8],
}

/// Splits a Confluent-framed Protobuf value; the error says what is wrong, for the dead-letter
/// table.
pub fn frame(value: &[u8]) -> Result<Frame<'_>, String> {
    let (schema_id, mut rest) = match value {
        [0, a, b, c, d, rest @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]), rest),
        [m, ..] if *m != 0 => return Err(format!("not in the Confluent wire format (magic byte {m}, not 0)")),
        _ => return Err(format!("too short for the Confluent wire format ({} bytes)", value.len())),
    };
    let count = zigzag(&mut rest).map_err(|e| format!("message indexes: {e}"))?;
    let indexes = match count {
        0 => vec![0],
        n if n < 0 || n as usize > MAX_INDEXES => return Err(format!("message indexes: a count of {n}")),
        n => {
            let mut indexes = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let i = zigzag(&mut rest).map_err(|e| format!("message indexes: {e}"))?;
                if i < 0 {
                    return Err(format!("message indexes: a negative index {i}"));
                }
                indexes.push(i);
            }
            indexes
        }
    };
    Ok(Frame { schema_id, indexes, body: rest })
}

/// One zigzag varint of at most 32 bits, taken from the front of `bytes`.
fn zigzag(bytes: &mut &[u8]) -> Result<i32, String> {
    let mut raw: u32 = 0;
    for (i, byte) in bytes.iter().enumerate().take(5) {
        raw |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i == 4 && byte & 0x70 != 0 {
                break; // more than 32 bits
            }
            *bytes = &bytes[i + 1..];
            return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
        }
    }
    if bytes.len() < 5 && bytes.last().is_none_or(|b| b & 0x80 != 0) {
        return Err("cut short".into());
    }
    Err("a varint longer than 32 bits".into())
}

#[cfg(test)]
mod tests {
    use super::{Frame, frame};
    use proptest::prelude::*;

    /// The indexes as Confluent's serializers write them (`MessageIndexes.toByteArray`, and the
    /// Python client's `_encode_varints`), written here independently of the reader.
    fn encode(indexes: &[i32]) -> Vec<u8> {
        fn varint(mut v: u32, out: &mut Vec<u8>) {
            while v >= 0x80 {
                out.push((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        let zz = |v: i32| ((v << 1) ^ (v >> 31)) as u32;
        if indexes == [0] {
            return vec![0];
        }
        let mut out = Vec::new();
        varint(zz(indexes.len() as i32), &mut out);
        for &i in indexes {
            varint(zz(i), &mut out);
        }
        out
    }

    #[test]
    fn the_first_message_is_one_zero_byte_and_its_long_form_reads_the_same() {
        let short = [0, 0, 0, 0, 7, 0, 0x08, 0x01];
        assert_eq!(frame(&short).unwrap(), Frame { schema_id: 7, indexes: vec![0], body: &[0x08, 0x01] });
        let long = [0, 0, 0, 0, 7, 2, 0, 0x08, 0x01];
        assert_eq!(frame(&long).unwrap(), Frame { schema_id: 7, indexes: vec![0], body: &[0x08, 0x01] });
    }

    #[test]
    fn a_nested_message_as_confluents_python_client_framed_it() {
        // confluent-kafka 2.16's ProtobufSerializer, a message nested in the file's first one.
        let value = [0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x00, 0x02, 0x0a, 0x01, 0x78];
        assert_eq!(frame(&value).unwrap(), Frame { schema_id: 2, indexes: vec![0, 1], body: &[0x0a, 0x01, 0x78] });
    }

    #[test]
    fn damaged_frames_say_what_is_wrong() {
        let reason = |v: &[u8]| frame(v).unwrap_err();
        assert!(reason(&[]).contains("too short"), "{}", reason(&[]));
        assert!(reason(&[0, 0, 0, 1]).contains("too short"));
        assert!(reason(&[1, 0, 0, 0, 1, 0]).contains("magic byte 1"));
        assert!(reason(&[0, 0, 0, 0, 1]).contains("cut short"), "no indexes at all");
        assert!(reason(&[0, 0, 0, 0, 1, 0x80]).contains("cut short"));
        assert!(reason(&[0, 0, 0, 0, 1, 4, 0]).contains("cut short"), "two indexes announced, one there");
        assert!(reason(&[0, 0, 0, 0, 1, 1]).contains("a count of -1"));
        assert!(reason(&[0, 0, 0, 0, 1, 2, 1]).contains("negative index -1"));
        assert!(reason(&[0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x7f]).contains("longer than 32 bits"));
    }

    proptest! {
        #[test]
        fn what_confluent_frames_reads_back(
            id in any::<u32>(),
            indexes in prop::collection::vec(0i32..100_000, 1..6),
            body in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut value = vec![0];
            value.extend_from_slice(&id.to_be_bytes());
            value.extend(encode(&indexes));
            value.extend_from_slice(&body);
            prop_assert_eq!(frame(&value).unwrap(), Frame { schema_id: id, indexes, body: &body });
        }

        #[test]
        fn any_bytes_are_split_or_refused_never_a_panic(value in prop::collection::vec(any::<u8>(), 0..24)) {
            let _ = frame(&value);
        }
    }
}
