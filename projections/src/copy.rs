//! Rows sent with `COPY … FROM STDIN (FORMAT binary)`: the cheapest way
//! into a table for rows that are new. Postgres writes them with one WAL
//! record per page rather than one per row, and reads each value in the
//! binary form it stores, with no SQL text or array to take apart.
//!
//! Values are encoded by sqlx's own binary encoders (the ones that bind
//! statement parameters), so this module only frames them: the file
//! header, a field count per row, a length before each value, a trailer.

use sqlx::encode::IsNull;
use sqlx::postgres::{PgArgumentBuffer, PgConnection, Postgres};
use sqlx::{Encode, Error};

/// The signature, flags and header extension of a binary COPY stream.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows for one `COPY … FROM STDIN (FORMAT binary)`, built in memory.
pub(crate) struct BinaryCopy {
    statement: &'static str,
    fields: i16,
    rows: usize,
    buffer: PgArgumentBuffer,
}

impl BinaryCopy {
    /// Rows of `fields` values each, for `statement` (a `COPY … FROM
    /// STDIN (FORMAT binary)` naming those columns, in order).
    pub(crate) fn new(statement: &'static str, fields: i16) -> Self {
        let mut buffer = PgArgumentBuffer::default();
        buffer.extend_from_slice(HEADER);
        Self {
            statement,
            fields,
            rows: 0,
            buffer,
        }
    }

    /// Starts a row; exactly `fields` values must follow.
    pub(crate) fn row(&mut self) -> &mut Self {
        self.rows += 1;
        self.buffer.extend_from_slice(&self.fields.to_be_bytes());
        self
    }

    /// Appends one value of the current row, of the column's own type
    /// (binary COPY casts nothing).
    pub(crate) fn value<'q, T: Encode<'q, Postgres>>(
        &mut self,
        value: T,
    ) -> Result<&mut Self, Error> {
        let at = self.buffer.len();
        self.buffer.extend_from_slice(&[0; 4]);
        let len = match value.encode(&mut self.buffer).map_err(Error::Encode)? {
            IsNull::No => i32::try_from(self.buffer.len() - at - 4)
                .map_err(|_| Error::Encode("a COPY value over 2 GiB".into()))?,
            IsNull::Yes => -1,
        };
        self.buffer[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(self)
    }

    /// Sends the rows on `conn` (nothing when there are none); answers
    /// how many Postgres wrote.
    pub(crate) async fn send(mut self, conn: &mut PgConnection) -> Result<u64, Error> {
        if self.rows == 0 {
            return Ok(0);
        }
        self.buffer.extend_from_slice(&(-1i16).to_be_bytes());
        // Dropped on an error, the copy tells Postgres it failed, and the
        // transaction it ran in fails with it.
        let mut copy = conn.copy_in_raw(self.statement).await?;
        copy.send(&self.buffer[..]).await?;
        copy.finish().await
    }
}
