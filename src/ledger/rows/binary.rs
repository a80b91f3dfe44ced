//! PostgreSQL's binary COPY format, written into one buffer per COPY: a header, then per row a
//! field count and each field as a length and its binary value (`-1` for NULL), then a trailer.
//! Values are encoded by the same `ToSql` implementations tokio-postgres uses for parameters.
use bytes::{BufMut, Bytes, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::domain::error::{Error, Result};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The rows of one `COPY … FROM STDIN (FORMAT binary)`.
pub(crate) struct CopyRows {
    buf: BytesMut,
    fields: i16,
    rows: usize,
}

impl CopyRows {
    /// Rows of `fields` fields each; `capacity` bytes are reserved up front.
    pub(crate) fn new(fields: i16, capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity + SIGNATURE.len() + 10);
        buf.put_slice(SIGNATURE);
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        CopyRows {
            buf,
            fields,
            rows: 0,
        }
    }

    /// Starts a row; exactly `fields` calls of [`CopyRows::field`] follow.
    pub(crate) fn row(&mut self) {
        self.buf.put_i16(self.fields);
        self.rows += 1;
    }

    pub(crate) fn field<T: ToSql>(&mut self, value: T, ty: &Type) -> Result<()> {
        let at = self.buf.len();
        self.buf.put_i32(0);
        let written = value
            .to_sql(ty, &mut self.buf)
            .map_err(|e| Error::Internal(format!("cannot encode a {ty} for COPY: {e}")))?;
        match written {
            IsNull::Yes => {
                self.buf.truncate(at);
                self.buf.put_i32(-1);
            }
            IsNull::No => {
                let len = i32::try_from(self.buf.len() - at - 4)
                    .map_err(|_| Error::Internal("a COPY field over 2 GiB".into()))?;
                self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The COPY data, trailer included.
    pub(crate) fn finish(mut self) -> Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_binary_copy_layout() {
        let mut rows = CopyRows::new(2, 0);
        rows.row();
        rows.field("ab", &Type::TEXT).unwrap();
        rows.field(None::<&str>, &Type::TEXT).unwrap();
        assert!(!rows.is_empty());
        let data = rows.finish();
        let mut expected = SIGNATURE.to_vec();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend([0, 2]); // two fields
        expected.extend([0, 0, 0, 2, b'a', b'b']);
        expected.extend([0xff, 0xff, 0xff, 0xff]); // NULL
        expected.extend([0xff, 0xff]); // trailer
        assert_eq!(&data[..], &expected[..]);
    }
}
