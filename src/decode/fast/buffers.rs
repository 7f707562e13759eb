//! The plain vectors the column builders keep: validity bits ([`Nulls`]) and variable-length
//! values ([`Bytes`]). Plain vectors are what makes rolling back a refused message cheap: each
//! truncates to a length.

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, LargeBinaryArray, LargeStringArray, StringArray};
use arrow_buffer::{ArrowNativeType, BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::ArrowError;

/// Validity of the values of a column, one bit each (set: valid). Most columns never see a null:
/// the bits are only kept from a column's first null on.
#[derive(Debug)]
pub(super) struct Nulls {
    len: usize,
    bits: Option<BooleanBufferBuilder>,
}

impl Nulls {
    pub(super) fn new() -> Nulls {
        Nulls { len: 0, bits: None }
    }
    #[inline]
    pub(super) fn push(&mut self, valid: bool) {
        match &mut self.bits {
            Some(bits) => bits.append(valid),
            None if valid => {}
            None => {
                let mut bits = BooleanBufferBuilder::new(self.len + 1);
                bits.append_n(self.len, true);
                bits.append(false);
                self.bits = Some(bits);
            }
        }
        self.len += 1;
    }
    pub(super) fn truncate(&mut self, len: usize) {
        self.len = len;
        if let Some(bits) = &mut self.bits {
            bits.truncate(len);
        }
    }
    pub(super) fn finish(&mut self) -> Option<NullBuffer> {
        self.len = 0;
        self.bits.take().map(|mut b| NullBuffer::new(b.finish())).filter(|n| n.null_count() > 0)
    }
}

/// Variable-length values: the text of string columns, and message keys for the meta column.
#[derive(Debug)]
pub(in crate::decode) struct Bytes {
    large: bool,
    /// Where each value ends in `data`, after a leading 0.
    ends: Vec<i64>,
    data: Vec<u8>,
    nulls: Nulls,
}

impl Bytes {
    /// Values of a column with 64-bit offsets (`large`) or 32-bit ones.
    pub(in crate::decode) fn new(large: bool) -> Bytes {
        Bytes { large, ends: vec![0], data: Vec::new(), nulls: Nulls::new() }
    }

    /// False (and nothing appended) when the column's offsets cannot reach past the value.
    pub(in crate::decode) fn push(&mut self, value: Option<&[u8]>) -> bool {
        let value = value.unwrap_or_default();
        let end = self.data.len() + value.len();
        if !self.large && end > i32::MAX as usize {
            return false;
        }
        self.data.extend_from_slice(value);
        self.ends.push(end as i64);
        true
    }

    pub(in crate::decode) fn push_value(&mut self, value: &[u8]) -> bool {
        self.push(Some(value)) && {
            self.nulls.push(true);
            true
        }
    }

    pub(in crate::decode) fn push_null(&mut self) {
        self.push(None);
        self.nulls.push(false);
    }

    pub(super) fn truncate(&mut self, len: usize) {
        self.ends.truncate(len + 1);
        self.data.truncate(self.ends[len] as usize);
        self.nulls.truncate(len);
    }

    fn take(&mut self) -> (Vec<i64>, Buffer, Option<NullBuffer>) {
        let ends = std::mem::replace(&mut self.ends, vec![0]);
        (ends, Buffer::from_vec(std::mem::take(&mut self.data)), self.nulls.finish())
    }

    pub(super) fn finish_utf8(&mut self) -> Result<ArrayRef, ArrowError> {
        let large = self.large;
        let (ends, data, nulls) = self.take();
        Ok(if large {
            Arc::new(LargeStringArray::try_new(offsets(ends)?, data, nulls)?)
        } else {
            Arc::new(StringArray::try_new(offsets(ends)?, data, nulls)?)
        })
    }

    /// The values as a binary column, with 64-bit offsets (`large`) or 32-bit ones.
    pub(in crate::decode) fn finish_binary(&mut self, large: bool) -> Result<ArrayRef, ArrowError> {
        let (ends, data, nulls) = self.take();
        Ok(if large {
            Arc::new(LargeBinaryArray::try_new(offsets(ends)?, data, nulls)?)
        } else {
            Arc::new(BinaryArray::try_new(offsets(ends)?, data, nulls)?)
        })
    }
}

/// Offsets of the width `O`.
pub(super) fn offsets<O: ArrowNativeType + TryFrom<i64>>(ends: Vec<i64>) -> Result<OffsetBuffer<O>, ArrowError> {
    let ends: Option<Vec<O>> = ends.into_iter().map(|e| O::try_from(e).ok()).collect();
    let ends = ends.ok_or_else(|| ArrowError::ComputeError("over 2 GiB of values for 32-bit offsets".into()))?;
    Ok(OffsetBuffer::new(ScalarBuffer::from(ends)))
}
