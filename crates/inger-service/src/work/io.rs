//! Readers and writers that are cancellation points: each refill or write calls
//! [`inger::checkpoint`], so a cooperative cancellation unwinds a library's decoder or
//! serialiser from inside its own loop.

use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

/// An in-memory reader that hands out at most `chunk` bytes per refill and is a cancellation
/// point at each refill.
pub(crate) struct CheckpointReader {
    data: Vec<u8>,
    position: usize,
    chunk: usize,
}

impl CheckpointReader {
    /// Reads `data`, at most `chunk` bytes (at least one) per refill.
    pub(crate) fn new(data: Vec<u8>, chunk: usize) -> Self {
        CheckpointReader {
            data,
            position: 0,
            chunk: chunk.max(1),
        }
    }
}

impl Read for CheckpointReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for CheckpointReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        inger::checkpoint();
        let end = self.data.len().min(self.position + self.chunk);
        Ok(&self.data[self.position..end])
    }

    fn consume(&mut self, amount: usize) {
        self.position = self.data.len().min(self.position + amount);
    }
}

impl Seek for CheckpointReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.data.len() as i128;
        let target = match to {
            SeekFrom::Start(offset) => i128::from(offset),
            SeekFrom::End(offset) => len + i128::from(offset),
            SeekFrom::Current(offset) => self.position as i128 + i128::from(offset),
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.position = target.min(len) as usize;
        Ok(target as u64)
    }
}

/// A growing in-memory writer with a size cap, a cancellation point every `every` bytes.
pub(crate) struct CappedWriter {
    pub(crate) bytes: Vec<u8>,
    cap: usize,
    every: usize,
    next_checkpoint: usize,
}

impl CappedWriter {
    /// A writer that refuses to grow past `cap` bytes.
    pub(crate) fn new(cap: usize, every: usize) -> Self {
        CappedWriter {
            bytes: Vec::new(),
            cap,
            every: every.max(1),
            next_checkpoint: every.max(1),
        }
    }
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + data.len() > self.cap {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("the answer would exceed {} bytes", self.cap),
            ));
        }
        self.bytes.extend_from_slice(data);
        if self.bytes.len() >= self.next_checkpoint {
            self.next_checkpoint = self.bytes.len() + self.every;
            inger::checkpoint();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_hands_out_small_chunks_and_seeks() {
        let mut reader = CheckpointReader::new((0..100u8).collect(), 7);
        assert_eq!(reader.fill_buf().unwrap().len(), 7);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, (0..100u8).collect::<Vec<_>>());
        assert_eq!(reader.seek(SeekFrom::End(-10)).unwrap(), 90);
        assert_eq!(reader.fill_buf().unwrap(), &[90, 91, 92, 93, 94, 95, 96]);
        assert!(reader.seek(SeekFrom::Current(-1000)).is_err());
    }

    #[test]
    fn writer_refuses_to_grow_past_its_cap() {
        let mut writer = CappedWriter::new(10, 3);
        writer.write_all(b"0123456789").unwrap();
        assert!(writer.write_all(b"x").is_err());
        assert_eq!(writer.bytes, b"0123456789");
    }
}
