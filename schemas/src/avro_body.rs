//! Reading the Avro binary encoding of a body by hand, for the decoders of hot records
//! (the sample views), which borrow strings instead of building Avro values.

use crate::error::{Error, Result};

/// Reads the Avro binary encoding of a body, for the hand-written decoders of hot
/// records (`SampleView::read`). Errors name `record`.
pub(crate) struct BodyReader<'a> {
    bytes: &'a [u8],
    record: &'static str,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], record: &'static str) -> Self {
        Self { bytes, record }
    }

    fn truncated(&self) -> Error {
        Error::shape(self.record, "the body ends in the middle of a value")
    }

    /// A zigzag varint `long` (also `int`, union indexes, lengths and block counts).
    pub(crate) fn long(&mut self) -> Result<i64> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let (&b, rest) = self.bytes.split_first().ok_or_else(|| self.truncated())?;
            self.bytes = rest;
            if shift >= 64 {
                return Err(Error::shape(self.record, "a varint longer than 10 bytes"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    pub(crate) fn double(&mut self) -> Result<f64> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<8>() else {
            return Err(self.truncated());
        };
        self.bytes = rest;
        Ok(f64::from_le_bytes(*head))
    }

    pub(crate) fn boolean(&mut self) -> Result<bool> {
        let (&b, rest) = self.bytes.split_first().ok_or_else(|| self.truncated())?;
        self.bytes = rest;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::shape(self.record, format!("boolean byte {other}"))),
        }
    }

    pub(crate) fn str(&mut self) -> Result<&'a str> {
        let len = self.long()?;
        let len = usize::try_from(len)
            .map_err(|_| Error::shape(self.record, format!("negative string length {len}")))?;
        if len > self.bytes.len() {
            return Err(self.truncated());
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(head)
            .map_err(|e| Error::shape(self.record, format!("a string is not UTF-8: {e}")))
    }

    /// A union branch index below `branches`.
    pub(crate) fn union_index(&mut self, branches: i64) -> Result<i64> {
        let i = self.long()?;
        if !(0..branches).contains(&i) {
            return Err(Error::shape(self.record, format!("union branch {i}")));
        }
        Ok(i)
    }

    /// A map whose keys stay borrowed: calls `entry(key, reader)` for each entry, which
    /// must read the value.
    pub(crate) fn map(
        &mut self,
        mut entry: impl FnMut(&'a str, &mut Self) -> Result<()>,
    ) -> Result<()> {
        loop {
            let mut count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| self.truncated())?;
                let _block_bytes = self.long()?;
            }
            for _ in 0..count {
                let key = self.str()?;
                entry(key, self)?;
            }
        }
    }
}
