//! The order in which a batch's copies and compute are issued on the engine's three streams, so
//! that the copies overlap the compute. A batch is cut into chunks of whole frames; each chunk
//! is staged into pinned memory (host), uploaded (upload stream), stylized (compute stream),
//! downloaded (download stream) and collected (host), with an event between each step and the
//! next. While the GPU computes chunk k it can upload chunk k+1 and download chunk k-1, and the
//! host stages and collects chunks around them.
//!
//! Every chunk has its own frames' regions of the staging buffers (pinned in, device, pinned
//! out), so no region is reused within a batch. The batch ends when its last chunk is collected,
//! which implies that every upload and compute before it has finished (each download waited for
//! its compute, each compute for its upload, and the compute stream runs in order): the next
//! batch may reuse every region. The order is generic over [`Streams`] so that the tests run
//! this same code against a simulated GPU that checks every read for a race.

use std::ops::Range;

/// Pixels a chunk holds at least (when the batch has them): about 4 million, two 1080p frames.
/// The 128-channel layers of such a chunk, at a sixteenth of its pixels, still make about 2,000
/// blocks of the tensor-core GEMM, so cutting a batch costs the kernels nothing but launches;
/// a chunk of a single small frame would leave an H100 partly idle in those layers.
pub const CHUNK_PIXELS: usize = 4_000_000;

/// The chunks of a batch of `frames` frames of `frame_pixels` pixels each: consecutive ranges
/// of frames, each of `CHUNK_PIXELS` or more (but the last), covering the batch in order.
pub fn chunks(frames: usize, frame_pixels: usize) -> Vec<Range<usize>> {
    let per_chunk = CHUNK_PIXELS.div_ceil(frame_pixels.max(1)).max(1);
    (0..frames)
        .step_by(per_chunk)
        .map(|start| start..(start + per_chunk).min(frames))
        .collect()
}

/// The steps of one chunk, each issued without waiting for the GPU; an event marks the end of
/// each step on its stream, and the next step waits for it.
pub trait Streams {
    type Event;
    type Error;
    /// Host: copies the chunk's frames into their region of the pinned input buffer.
    fn stage(&mut self, chunk: Range<usize>) -> Result<(), Self::Error>;
    /// Upload stream: copies the chunk's pinned input to the device.
    fn upload(&mut self, chunk: Range<usize>) -> Result<Self::Event, Self::Error>;
    /// Compute stream, after `uploaded`: the network on the chunk, its 8-bit output written
    /// over its input's region of the device buffer.
    fn stylize(
        &mut self,
        chunk: Range<usize>,
        uploaded: &Self::Event,
    ) -> Result<Self::Event, Self::Error>;
    /// Download stream, after `stylized`: copies the chunk's output into pinned memory.
    fn download(
        &mut self,
        chunk: Range<usize>,
        stylized: &Self::Event,
    ) -> Result<Self::Event, Self::Error>;
    /// Host, after waiting for `downloaded`: takes the chunk's stylized frames.
    fn collect(&mut self, chunk: Range<usize>, downloaded: &Self::Event)
        -> Result<(), Self::Error>;
}

/// Issues every chunk's steps, then collects the chunks in order: staging a chunk overlaps the
/// GPU's work on the chunk before, and collecting one overlaps its work on those after.
pub fn run<S: Streams>(streams: &mut S, chunks: &[Range<usize>]) -> Result<(), S::Error> {
    let mut downloads = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        streams.stage(chunk.clone())?;
        let uploaded = streams.upload(chunk.clone())?;
        let stylized = streams.stylize(chunk.clone(), &uploaded)?;
        downloads.push(streams.download(chunk.clone(), &stylized)?);
    }
    for (chunk, downloaded) in chunks.iter().zip(&downloads) {
        streams.collect(chunk.clone(), downloaded)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// What a frame's region of a buffer holds.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Content {
        Nothing,
        Input {
            batch: usize,
            frame: usize,
        },
        Stylized {
            batch: usize,
            frame: usize,
        },
        /// Something stylized from what was not a frame's input.
        Garbage,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Buffer {
        PinnedIn = 0,
        Device = 1,
        PinnedOut = 2,
    }

    const UPLOAD: usize = 0;
    const COMPUTE: usize = 1;
    const DOWNLOAD: usize = 2;

    /// A copy or a compute on one stream: reads one buffer's region of its frames when it
    /// starts, writes another's when it ends, and then completes its event.
    #[derive(Debug)]
    struct Operation {
        name: &'static str,
        reads: Buffer,
        writes: Buffer,
        frames: Range<usize>,
        after: Option<usize>,
        event: usize,
        read: Option<Vec<Content>>,
    }

    impl Operation {
        fn touches(&self, buffer: Buffer, frames: &Range<usize>, writing: bool) -> bool {
            let overlap = self.frames.start < frames.end && frames.start < self.frames.end;
            overlap && (self.writes == buffer || (writing && self.reads == buffer))
        }
    }

    /// A GPU whose streams run their operations in order, concurrently with each other, in an
    /// order drawn at random within what the events allow. An operation that would run while
    /// another on a different stream writes what it reads, or touches what it writes, is a
    /// race; so is the host writing what a pending operation still reads, or reading what one
    /// still writes.
    struct SimulatedGpu {
        buffers: [Vec<Content>; 3],
        streams: [VecDeque<Operation>; 3],
        completed: Vec<bool>,
        random: u64,
        batch: usize,
        collected: Vec<Content>,
        /// A faulty GPU that starts operations without waiting for their events.
        ignores_waits: bool,
        most_running: usize,
    }

    impl SimulatedGpu {
        fn new(frames: usize, seed: u64) -> SimulatedGpu {
            SimulatedGpu {
                buffers: std::array::from_fn(|_| vec![Content::Nothing; frames]),
                streams: Default::default(),
                completed: Vec::new(),
                random: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                batch: 0,
                collected: Vec::new(),
                ignores_waits: false,
                most_running: 0,
            }
        }

        fn next_random(&mut self) -> u64 {
            self.random ^= self.random << 13;
            self.random ^= self.random >> 7;
            self.random ^= self.random << 17;
            self.random
        }

        fn enqueue(
            &mut self,
            stream: usize,
            name: &'static str,
            (reads, writes): (Buffer, Buffer),
            frames: Range<usize>,
            after: Option<usize>,
        ) -> usize {
            let event = self.completed.len();
            self.completed.push(false);
            self.streams[stream].push_back(Operation {
                name,
                reads,
                writes,
                frames,
                after,
                event,
                read: None,
            });
            event
        }

        /// Starts or ends one operation at the head of a stream chosen at random among those
        /// that can move; false when none can.
        fn step(&mut self) -> Result<bool, String> {
            let movable: Vec<usize> = (0..3)
                .filter(|&s| match self.streams[s].front() {
                    Some(op) if op.read.is_some() => true,
                    Some(op) => {
                        self.ignores_waits || op.after.is_none_or(|event| self.completed[event])
                    }
                    None => false,
                })
                .collect();
            if movable.is_empty() {
                return Ok(false);
            }
            let stream = movable[self.next_random() as usize % movable.len()];
            let running = self.streams[stream]
                .front()
                .expect("movable")
                .read
                .is_some();
            if running {
                let op = self.streams[stream].pop_front().expect("movable");
                let written = op.read.expect("running");
                self.buffers[op.writes as usize][op.frames.clone()].copy_from_slice(&written);
                self.completed[op.event] = true;
                return Ok(true);
            }
            let op = self.streams[stream].front().expect("movable");
            for other in (0..3).filter(|&s| s != stream) {
                if let Some(busy) = self.streams[other].front().filter(|o| o.read.is_some()) {
                    if busy.touches(op.reads, &op.frames, false)
                        || busy.touches(op.writes, &op.frames, true)
                    {
                        return Err(format!(
                            "{} of frames {:?} ran during {} of frames {:?}",
                            op.name, op.frames, busy.name, busy.frames
                        ));
                    }
                }
            }
            let stylizes = stream == COMPUTE;
            let read: Vec<Content> = self.buffers[op.reads as usize][op.frames.clone()]
                .iter()
                .map(|&content| match (stylizes, content) {
                    (false, content) => content,
                    (true, Content::Input { batch, frame }) => Content::Stylized { batch, frame },
                    (true, _) => Content::Garbage,
                })
                .collect();
            self.streams[stream].front_mut().expect("movable").read = Some(read);
            let running = self
                .streams
                .iter()
                .filter(|s| s.front().is_some_and(|o| o.read.is_some()));
            self.most_running = self.most_running.max(running.count());
            Ok(true)
        }

        /// The host's access to a pinned buffer: a race if a pending operation still writes
        /// those frames, or (for a host write) still reads them.
        fn host_access(
            &self,
            buffer: Buffer,
            frames: &Range<usize>,
            writing: bool,
        ) -> Result<(), String> {
            match self
                .streams
                .iter()
                .flatten()
                .find(|op| op.touches(buffer, frames, writing))
            {
                Some(op) => Err(format!(
                    "the host touched {buffer:?} of frames {frames:?} before {} of frames {:?} ended",
                    op.name, op.frames
                )),
                None => Ok(()),
            }
        }

        /// Lets the GPU run until it is idle: what happens between two batches.
        fn drain(&mut self) -> Result<(), String> {
            while self.step()? {}
            match self.streams.iter().flatten().next() {
                Some(stuck) => Err(format!("{} never ran", stuck.name)),
                None => Ok(()),
            }
        }
    }

    impl Streams for SimulatedGpu {
        type Event = usize;
        type Error = String;

        fn stage(&mut self, chunk: Range<usize>) -> Result<(), String> {
            self.host_access(Buffer::PinnedIn, &chunk, true)?;
            let batch = self.batch;
            for frame in chunk {
                self.buffers[Buffer::PinnedIn as usize][frame] = Content::Input { batch, frame };
            }
            Ok(())
        }

        fn upload(&mut self, chunk: Range<usize>) -> Result<usize, String> {
            let buffers = (Buffer::PinnedIn, Buffer::Device);
            Ok(self.enqueue(UPLOAD, "upload", buffers, chunk, None))
        }

        fn stylize(&mut self, chunk: Range<usize>, uploaded: &usize) -> Result<usize, String> {
            let buffers = (Buffer::Device, Buffer::Device);
            Ok(self.enqueue(COMPUTE, "stylize", buffers, chunk, Some(*uploaded)))
        }

        fn download(&mut self, chunk: Range<usize>, stylized: &usize) -> Result<usize, String> {
            let buffers = (Buffer::Device, Buffer::PinnedOut);
            Ok(self.enqueue(DOWNLOAD, "download", buffers, chunk, Some(*stylized)))
        }

        fn collect(&mut self, chunk: Range<usize>, downloaded: &usize) -> Result<(), String> {
            while !self.completed[*downloaded] {
                if !self.step()? {
                    return Err(format!("frames {chunk:?} were never downloaded"));
                }
            }
            self.host_access(Buffer::PinnedOut, &chunk, false)?;
            let out = &self.buffers[Buffer::PinnedOut as usize][chunk];
            self.collected.extend_from_slice(out);
            Ok(())
        }
    }

    /// Three batches one after another on the same buffers, as the engine runs them, with the
    /// GPU left to run on between them for a random while; the first race or the frames
    /// collected per batch.
    fn three_batches(gpu: &mut SimulatedGpu, sizes: [(usize, usize); 3]) -> Result<(), String> {
        for (batch, (frames, frame_pixels)) in sizes.into_iter().enumerate() {
            gpu.batch = batch;
            gpu.collected.clear();
            run(gpu, &chunks(frames, frame_pixels))?;
            let expected: Vec<Content> = (0..frames)
                .map(|frame| Content::Stylized { batch, frame })
                .collect();
            if gpu.collected != expected {
                return Err(format!("batch {batch} collected {:?}", gpu.collected));
            }
            for _ in 0..gpu.next_random() % 4 {
                gpu.step()?;
            }
        }
        gpu.drain()
    }

    const HD: usize = 1920 * 1080;
    const SD: usize = 320 * 240;
    const BATCHES: [[(usize, usize); 3]; 3] = [
        [(8, HD), (8, HD), (3, HD)],
        [(5, HD), (8, SD), (7, HD)],
        [(1, HD), (2, 3840 * 2160), (8, HD)],
    ];

    #[test]
    fn chunks_cover_the_batch_in_order_with_enough_pixels_each() {
        assert_eq!(chunks(8, HD), [0..2, 2..4, 4..6, 6..8]);
        assert_eq!(chunks(7, HD), [0..2, 2..4, 4..6, 6..7]);
        assert_eq!(
            chunks(8, 3840 * 2160),
            (0..8).map(|f| f..f + 1).collect::<Vec<_>>()
        );
        let whole = |frames| std::iter::once(0..frames).collect::<Vec<_>>();
        assert_eq!(chunks(8, SD), whole(8));
        assert_eq!(chunks(8, 720 * 720), whole(8));
        assert_eq!(chunks(1, HD), whole(1));
        assert!(chunks(0, HD).is_empty());
    }

    #[test]
    fn every_frame_comes_back_stylized_from_its_own_input_whatever_order_the_streams_run_in() {
        for sizes in BATCHES {
            for seed in 0..300 {
                let frames = sizes.iter().map(|(frames, _)| *frames).max().unwrap();
                let mut gpu = SimulatedGpu::new(frames, seed);
                if let Err(race) = three_batches(&mut gpu, sizes) {
                    panic!("batches {sizes:?}, seed {seed}: {race}");
                }
            }
        }
    }

    #[test]
    fn the_order_lets_uploads_compute_and_downloads_run_at_once() {
        let most = (0..100)
            .map(|seed| {
                let mut gpu = SimulatedGpu::new(8, seed);
                three_batches(&mut gpu, BATCHES[0]).expect("no race");
                gpu.most_running
            })
            .max();
        assert_eq!(most, Some(3));
    }

    #[test]
    fn a_gpu_that_does_not_wait_for_the_events_is_caught() {
        let caught = (0..100).filter(|&seed| {
            let mut gpu = SimulatedGpu::new(8, seed);
            gpu.ignores_waits = true;
            three_batches(&mut gpu, BATCHES[0]).is_err()
        });
        assert!(caught.count() > 50);
    }
}
