//! Protocol buffers' wire format, as far as `profile.proto` needs it: every
//! field there is an integer (a varint) or a length-delimited string or
//! message. Fixed-width fields are skipped so that a newer writer's extra
//! fields do no harm; groups, long obsolete, are refused.

/// One field's payload.
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width (32- or 64-bit) field: nothing in `profile.proto`.
    Fixed,
}

impl<'a> Value<'a> {
    pub fn uint(&self) -> Result<u64, String> {
        match *self {
            Value::Varint(v) => Ok(v),
            _ => Err("an integer field holds something else".into()),
        }
    }

    pub fn bytes(&self) -> Result<&'a [u8], String> {
        match *self {
            Value::Bytes(b) => Ok(b),
            _ => Err("a message or string field holds something else".into()),
        }
    }

    /// Appends the values of a repeated integer field: writers pack them
    /// into one length-delimited run, but a reader must also take them one
    /// field at a time.
    pub fn push_repeated(&self, out: &mut Vec<u64>) -> Result<(), String> {
        match *self {
            Value::Varint(v) => out.push(v),
            Value::Bytes(mut b) => {
                while !b.is_empty() {
                    out.push(varint(&mut b)?);
                }
            }
            Value::Fixed => return Err("a repeated integer field holds something else".into()),
        }
        Ok(())
    }
}

/// The fields of one message, in the order written.
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(message: &'a [u8]) -> Fields<'a> {
        Fields { rest: message }
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), String> {
        let key = varint(&mut self.rest)?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut self.rest)?),
            1 => take(&mut self.rest, 8).map(|_| Value::Fixed)?,
            2 => {
                let len = varint(&mut self.rest)?;
                Value::Bytes(take(&mut self.rest, usize::try_from(len).unwrap_or(usize::MAX))?)
            }
            5 => take(&mut self.rest, 4).map(|_| Value::Fixed)?,
            wire => return Err(format!("unsupported wire type {wire}")),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    /// (field number, payload)
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            // Nothing after a malformed field can be trusted.
            self.rest = &[];
        }
        Some(field)
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("truncated integer")?;
        *buf = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("integer longer than 64 bits".into())
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if len > buf.len() {
        return Err("field runs past the end of its message".into());
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(bytes: &[u8]) -> Result<Vec<(u64, u64)>, String> {
        Fields::new(bytes)
            .map(|f| {
                let (number, value) = f?;
                let v = match value {
                    Value::Varint(v) => v,
                    Value::Bytes(b) => b.len() as u64,
                    Value::Fixed => 0,
                };
                Ok((number, v))
            })
            .collect()
    }

    #[test]
    fn reads_varints_strings_and_skips_fixed_fields() {
        // 1: 300; 2: "abc"; 3: fixed64; 4: fixed32; 15: u64::MAX.
        let mut msg = vec![0x08, 0xac, 0x02, 0x12, 3, b'a', b'b', b'c', 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4];
        msg.extend([0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(fields(&msg).unwrap(), [(1, 300), (2, 3), (3, 0), (4, 0), (15, u64::MAX)]);
    }

    #[test]
    fn repeated_integers_packed_or_not() {
        let mut out = Vec::new();
        for f in Fields::new(&[0x0a, 3, 1, 0x80, 0x01, 0x08, 7]) {
            f.unwrap().1.push_repeated(&mut out).unwrap();
        }
        assert_eq!(out, [1, 128, 7]);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(fields(&[0x08]).unwrap_err(), "truncated integer");
        assert_eq!(fields(&[0x08, 0x80]).unwrap_err(), "truncated integer");
        assert_eq!(fields(&[0x12, 5, 1, 2]).unwrap_err(), "field runs past the end of its message");
        assert_eq!(fields(&[0x0b]).unwrap_err(), "unsupported wire type 3");
        assert_eq!(
            fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap_err(),
            "integer longer than 64 bits"
        );
        // A length longer than the address space, not a wrap-around.
        assert!(fields(&[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        // Parsing stops at the first bad field.
        assert_eq!(Fields::new(&[0x0b, 0x08, 1]).count(), 1);
    }
}
