//! GPU time per kernel, measured with CUDA events around each launch when the GPU benchmark
//! asks for it (never in a normal run: events cost a little and the totals need a
//! synchronisation). Launches of the same kernel on the same shape of layer add up in one row.

use super::cuda_error;
use crate::engine::EngineError;
use cudarc::driver::{sys::CUevent_flags, CudaEvent, CudaStream};
use std::sync::Arc;

/// One row of the table: a kernel on one kind of layer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KernelTime {
    pub kernel: String,
    pub launches: usize,
    pub milliseconds: f64,
}

/// Events recorded but not yet read, and the totals of those read.
#[derive(Default)]
pub struct KernelClock {
    pending: Vec<(String, CudaEvent, CudaEvent)>,
    totals: Vec<KernelTime>,
}

impl KernelClock {
    /// Runs `launch` between two events on `stream` when timing is on (`clock` is `Some`).
    pub fn time<T>(
        clock: &mut Option<KernelClock>,
        stream: &Arc<CudaStream>,
        ordinal: usize,
        kernel: impl FnOnce() -> String,
        launch: impl FnOnce() -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let Some(clock) = clock else {
            return launch();
        };
        let event = || {
            stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(cuda_error(ordinal))
        };
        let start = event()?;
        let result = launch()?;
        let end = event()?;
        clock.pending.push((kernel(), start, end));
        Ok(result)
    }

    /// The totals so far, reading the events recorded (waiting for them to complete).
    pub fn totals(&mut self, ordinal: usize) -> Result<Vec<KernelTime>, EngineError> {
        for (kernel, start, end) in self.pending.drain(..) {
            let milliseconds = start.elapsed_ms(&end).map_err(cuda_error(ordinal))? as f64;
            match self.totals.iter_mut().find(|row| row.kernel == kernel) {
                Some(row) => {
                    row.launches += 1;
                    row.milliseconds += milliseconds;
                }
                None => self.totals.push(KernelTime {
                    kernel,
                    launches: 1,
                    milliseconds,
                }),
            }
        }
        Ok(self.totals.clone())
    }
}
