//! Progress on rank 0: frames done out of the total and frames per second across all ranks,
//! as a bar on a terminal and as periodic log lines otherwise (batch jobs, CI, log files).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    last_log: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} frames  {per_sec}  eta {eta}",
                )
                .expect("valid template"),
            );
            bar
        });
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            started: now,
            last_log: now,
            bar,
        }
    }

    pub fn frame_done(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                log::info!(
                    "{}/{} frames ({:.0}%), {:.2} frames/s",
                    self.done,
                    self.total,
                    100.0 * self.done as f64 / self.total as f64,
                    self.frames_per_second()
                );
            }
            None => {}
        }
    }

    pub fn frames_per_second(&self) -> f64 {
        self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
