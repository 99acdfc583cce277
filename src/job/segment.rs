//! An encoded chunk on its way from the rank that encoded it to rank 0's work directory: an
//! MPEG-TS file, or a directory of PNG frames. Packed into one MPI message, and stored under a
//! partial name then renamed, so the work directory only ever holds whole chunks (resume
//! depends on it).

use super::JobError;
use crate::media::encode::{chunk_name, partial_name};
use crate::media::output::OutputKind;
use std::path::Path;

#[derive(Debug, PartialEq)]
pub enum Segment {
    File(Vec<u8>),
    /// File names and contents, in name order.
    Directory(Vec<(String, Vec<u8>)>),
}

fn work_dir_error(dir: &Path) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::WorkDir {
        dir: dir.display().to_string(),
        detail: e.to_string(),
    }
}

impl Segment {
    /// Reads a finished chunk (file or directory) at `path`.
    pub fn read(path: &Path) -> Result<Segment, JobError> {
        let error = work_dir_error(path);
        if !path.is_dir() {
            return Ok(Segment::File(std::fs::read(path).map_err(&error)?));
        }
        let mut files = Vec::new();
        for name in crate::storage::sorted_file_names(path)? {
            let bytes = std::fs::read(path.join(&name)).map_err(&error)?;
            files.push((name.to_string_lossy().into_owned(), bytes));
        }
        Ok(Segment::Directory(files))
    }

    /// Stores this chunk `chunk` in `work_dir` under its finished name, whole or not at all.
    pub fn store(&self, work_dir: &Path, chunk: usize, kind: &OutputKind) -> Result<(), JobError> {
        let error = work_dir_error(work_dir);
        let partial = work_dir.join(partial_name(chunk, kind));
        match self {
            Segment::File(bytes) => std::fs::write(&partial, bytes).map_err(&error)?,
            Segment::Directory(files) => {
                let _ = std::fs::remove_dir_all(&partial);
                std::fs::create_dir(&partial).map_err(&error)?;
                for (name, bytes) in files {
                    std::fs::write(partial.join(name), bytes).map_err(&error)?;
                }
            }
        }
        std::fs::rename(&partial, work_dir.join(chunk_name(chunk, kind))).map_err(&error)
    }

    /// The message: the chunk index, then either one file (count 0) or the count of files,
    /// each as name length, name, length, bytes (lengths little-endian u64).
    pub fn encode(&self, chunk: usize) -> Vec<u8> {
        let mut message = (chunk as u64).to_le_bytes().to_vec();
        let put = |bytes: &[u8], message: &mut Vec<u8>| {
            message.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            message.extend_from_slice(bytes);
        };
        match self {
            Segment::File(bytes) => {
                message.extend_from_slice(&0u64.to_le_bytes());
                put(bytes, &mut message);
            }
            Segment::Directory(files) => {
                message.extend_from_slice(&(files.len() as u64).to_le_bytes());
                for (name, bytes) in files {
                    put(name.as_bytes(), &mut message);
                    put(bytes, &mut message);
                }
            }
        }
        message
    }

    /// Reads a message made by [`Segment::encode`]: the chunk index and the segment.
    pub fn decode(message: &[u8]) -> Option<(usize, Segment)> {
        let mut rest = message;
        let mut number = || -> Option<u64> {
            let (head, tail) = rest.split_first_chunk::<8>()?;
            rest = tail;
            Some(u64::from_le_bytes(*head))
        };
        let chunk = number()? as usize;
        let count = number()?;
        let bytes = |rest: &mut &[u8]| -> Option<Vec<u8>> {
            let (head, tail) = rest.split_first_chunk::<8>()?;
            let length = usize::try_from(u64::from_le_bytes(*head)).ok()?;
            let (bytes, tail) = (tail.get(..length)?, tail.get(length..)?);
            *rest = tail;
            Some(bytes.to_vec())
        };
        let segment = if count == 0 {
            Segment::File(bytes(&mut rest)?)
        } else {
            let mut files = Vec::new();
            for _ in 0..count {
                let name = String::from_utf8(bytes(&mut rest)?).ok()?;
                let is_plain_name =
                    !name.is_empty() && !name.contains('/') && name != "." && name != "..";
                if !is_plain_name {
                    return None;
                }
                files.push((name, bytes(&mut rest)?));
            }
            Segment::Directory(files)
        };
        rest.is_empty().then_some((chunk, segment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_survive_their_message() {
        let file = Segment::File(vec![1, 2, 3]);
        assert_eq!(Segment::decode(&file.encode(7)), Some((7, file)));
        let dir = Segment::Directory(vec![
            ("000001.png".into(), vec![9; 5]),
            ("000002.png".into(), Vec::new()),
        ]);
        assert_eq!(Segment::decode(&dir.encode(0)), Some((0, dir)));
    }

    #[test]
    fn malformed_messages_are_refused() {
        let message = Segment::File(vec![1, 2, 3]).encode(1);
        assert_eq!(Segment::decode(&message[..message.len() - 1]), None);
        let escaping = Segment::Directory(vec![("../x".into(), vec![1])]).encode(1);
        assert_eq!(Segment::decode(&escaping), None);
    }

    #[test]
    fn a_stored_segment_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let kind = OutputKind::Images {
            pattern: "%06d.png".into(),
        };
        let segment = Segment::Directory(vec![("000001.png".into(), vec![4; 3])]);
        segment.store(dir.path(), 2, &kind).unwrap();
        let stored = dir.path().join(chunk_name(2, &kind));
        assert_eq!(Segment::read(&stored).unwrap(), segment);
        assert!(!dir.path().join(partial_name(2, &kind)).exists());
    }
}
