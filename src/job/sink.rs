//! Rank 0's side of the gather: stylized frames arrive from all ranks in any order; each is
//! routed to its chunk's encoder (writing into the work directory) and written as soon as every earlier frame of that chunk has
//! been. Only frames waiting for an earlier frame of their chunk are held, so memory is bounded
//! by the chunk size and the rank count, never by the video's length.

use super::plan::Plan;
use crate::frame::Frame;
use crate::media::encode::ChunkEncoder;
use crate::media::MediaError;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

struct OpenChunk {
    encoder: ChunkEncoder,
    next: usize,
    end: usize,
    waiting: BTreeMap<usize, Frame>,
}

pub struct ChunkSink<'a> {
    plan: &'a Plan,
    work_dir: PathBuf,
    open: HashMap<usize, OpenChunk>,
    finished: usize,
}

impl<'a> ChunkSink<'a> {
    pub fn new(plan: &'a Plan, work_dir: PathBuf) -> Self {
        ChunkSink {
            plan,
            work_dir,
            open: HashMap::new(),
            finished: 0,
        }
    }

    /// Takes stylized frame `index`.
    pub fn accept(&mut self, index: usize, frame: Frame) -> Result<(), MediaError> {
        let chunk_index = index / self.plan.chunk_frames;
        if !self.open.contains_key(&chunk_index) {
            let range = self.plan.chunk(chunk_index);
            let encoder = ChunkEncoder::start(
                &self.plan.output,
                self.plan.size,
                self.plan.input.frame_rate,
                chunk_index,
                range.start,
                &self.work_dir,
            )?;
            self.open.insert(
                chunk_index,
                OpenChunk {
                    encoder,
                    next: range.start,
                    end: range.end,
                    waiting: BTreeMap::new(),
                },
            );
        }
        let chunk = self.open.get_mut(&chunk_index).expect("opened above");
        chunk.waiting.insert(index, frame);
        while let Some(frame) = chunk.waiting.remove(&chunk.next) {
            chunk.encoder.write(&frame)?;
            chunk.next += 1;
        }
        if chunk.next == chunk.end {
            let done = self.open.remove(&chunk_index).expect("present");
            done.encoder.finish()?;
            self.finished += 1;
        }
        Ok(())
    }

    /// Whether every chunk of the plan has been encoded.
    pub fn is_complete(&self) -> bool {
        self.finished == self.plan.todo_chunks.len() && self.open.is_empty()
    }
}
