//! `stylemill watch`: polls a blob container and stylizes each new video once, as the
//! reference architecture's storage trigger did. Bookkeeping lives in the output container
//! under `.stylemill/`: a claim blob per video whose lease keeps two watchers off the same video
//! (renewed while the job runs, so a crashed watcher's claim expires), a `done` marker that a
//! restarted watcher trusts, and a `failed` marker holding the reason for a poison input. Each
//! marker records the ETag of the video it is about, so a video uploaded again under the same
//! name is new. Under mpirun, rank 0 watches and every job runs on all ranks.

use super::{logs, run, JobError, RunOptions};
use crate::cluster::Cluster;
use crate::storage::blob::container::Listed;
use crate::storage::blob::{block_on, spawn, Blob, BlobAddress, BlobError};
use crate::storage::{Location, StorageError, OUTPUT_METADATA};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Where watch mode keeps its claims and markers, in the output container.
pub const BOOKKEEPING: &str = ".stylemill/";
const CLAIM_SECONDS: i32 = 60;
const RENEW_EVERY: Duration = Duration::from_secs(20);
const VIDEO_EXTENSIONS: [&str; 11] = [
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "wmv", "flv",
];

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The watched container, its name part a prefix (empty for the whole container).
    pub source: BlobAddress,
    /// The output container: a name in the same account, or a container URL.
    pub output_container: Option<String>,
    pub blob_endpoint: Option<String>,
    pub interval: Duration,
    /// Look once, process what is there, and return.
    pub once: bool,
    /// The settings of every job; its input and output are set per video.
    pub run: RunOptions,
    /// Suffix of output names: `clip.mov` becomes `clip-<suffix>.mp4`.
    pub suffix: String,
    pub log_to: Option<Location>,
}

/// What a watcher did.
#[derive(Debug, Default, Clone, Copy)]
pub struct WatchSummary {
    pub processed: usize,
    pub failed: usize,
}

#[derive(Serialize, Deserialize)]
enum Announcement {
    Job,
    Stop,
}

/// A video waiting to be processed.
struct Pending {
    name: String,
    etag: String,
}

/// The marker a finished or failed video leaves.
#[derive(Serialize, Deserialize)]
struct Marker {
    input: String,
    etag: String,
    output: Option<String>,
    frames: Option<usize>,
    seconds: Option<f64>,
    error: Option<String>,
}

/// Runs the watcher on this rank until a signal (or, with `once`, one pass) ends it.
pub fn watch(options: &WatchOptions, cluster: &Cluster) -> Result<WatchSummary, JobError> {
    crate::shutdown::finish_current_job_on_signal();
    if !cluster.is_root() {
        return follow(options, cluster);
    }
    let result = Watcher::new(options).and_then(|watcher| watcher.run(cluster));
    cluster.announce(&serde_json::to_vec(&Announcement::Stop).expect("serializes"));
    result
}

/// A rank other than 0: run each job rank 0 announces.
fn follow(options: &WatchOptions, cluster: &Cluster) -> Result<WatchSummary, JobError> {
    loop {
        let message = cluster.await_announcement()?;
        match serde_json::from_slice(&message) {
            Ok(Announcement::Job) => match run(&options.run, cluster, None) {
                Ok(_) | Err(JobError::ReportedByRoot) => {}
                Err(error) => return Err(error),
            },
            _ => return Ok(WatchSummary::default()),
        }
    }
}

struct Watcher<'a> {
    options: &'a WatchOptions,
    source: Blob,
    outputs: Blob,
}

impl<'a> Watcher<'a> {
    fn new(options: &'a WatchOptions) -> Result<Watcher<'a>, JobError> {
        let source = Blob::new(&options.source.sibling(""))?;
        let outputs = match &options.output_container {
            Some(url) if crate::storage::blob::is_blob_url(url) => {
                Blob::new(&BlobAddress::parse(url, options.blob_endpoint.as_deref())?.sibling(""))?
            }
            Some(name) => source.at(options.source.in_container(name, "")),
            None => source.clone(),
        };
        Ok(Watcher {
            options,
            source,
            outputs,
        })
    }

    fn run(&self, cluster: &Cluster) -> Result<WatchSummary, JobError> {
        log::info!(
            "watching {} every {} s; outputs and markers go to {}",
            self.options.source,
            self.options.interval.as_secs_f64(),
            self.outputs.address()
        );
        let mut summary = WatchSummary::default();
        while !crate::shutdown::stop_requested() {
            match self.pending() {
                Ok(pending) => {
                    for video in pending {
                        if crate::shutdown::stop_requested() {
                            break;
                        }
                        self.process(&video, cluster, &mut summary)?;
                    }
                }
                Err(
                    error @ JobError::Storage(StorageError::Blob(BlobError::Unreachable { .. })),
                ) => {
                    log::warn!("{error}; trying again at the next poll");
                }
                Err(error) => return Err(error),
            }
            if self.options.once {
                break;
            }
            let started = Instant::now();
            while started.elapsed() < self.options.interval && !crate::shutdown::stop_requested() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        log::info!(
            "watcher stopped: {} video(s) processed, {} refused",
            summary.processed,
            summary.failed
        );
        Ok(summary)
    }

    /// Videos of the watched container with neither a done nor a failed marker for their
    /// current content, skipping stylemill's own blobs.
    fn pending(&self) -> Result<Vec<Pending>, JobError> {
        let listed = block_on(self.source.list(self.options.source.name()))?;
        let markers = self.markers()?;
        Ok(listed
            .into_iter()
            .filter(is_new_video)
            .filter(|blob| {
                ["done", "failed"].iter().all(|kind| {
                    markers.get(&self.marker_name(kind, &blob.name)) != Some(&blob.etag)
                })
            })
            .map(|blob| Pending {
                name: blob.name,
                etag: blob.etag,
            })
            .collect())
    }

    /// Marker names and the ETag each records.
    fn markers(&self) -> Result<HashMap<String, String>, JobError> {
        let listed = block_on(self.outputs.list(BOOKKEEPING))?;
        Ok(listed
            .into_iter()
            .filter_map(|blob| Some((blob.name, blob.metadata.get("source_etag")?.clone())))
            .collect())
    }

    fn marker_name(&self, kind: &str, name: &str) -> String {
        format!(
            "{BOOKKEEPING}{kind}/{}/{name}",
            self.options.source.container()
        )
    }

    fn bookkeeping(&self, kind: &str, name: &str) -> Blob {
        self.outputs.at(self
            .outputs
            .address()
            .sibling(&self.marker_name(kind, name)))
    }

    fn process(
        &self,
        video: &Pending,
        cluster: &Cluster,
        summary: &mut WatchSummary,
    ) -> Result<(), JobError> {
        let claim = self.bookkeeping("claims", &video.name);
        let claim_metadata = HashMap::from([(OUTPUT_METADATA.0.to_string(), "marker".to_string())]);
        block_on(claim.put(Vec::new(), true, claim_metadata))?;
        let Some(lease) = block_on(claim.acquire_lease(CLAIM_SECONDS))? else {
            log::info!("{}: another watcher is processing it", video.name);
            return Ok(());
        };
        let renewal = {
            let (claim, lease) = (claim.clone(), lease.clone());
            spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    if let Err(error) = claim.renew_lease(&lease).await {
                        log::warn!("cannot renew the claim on a video: {error}");
                    }
                }
            })
        };
        let outcome = self.process_claimed(video, cluster, summary);
        renewal.abort();
        if let Err(error) = block_on(claim.release_lease(&lease)) {
            log::warn!("cannot release the claim on {}: {error}", video.name);
        }
        outcome
    }

    fn process_claimed(
        &self,
        video: &Pending,
        cluster: &Cluster,
        summary: &mut WatchSummary,
    ) -> Result<(), JobError> {
        let markers = self.markers()?;
        if ["done", "failed"]
            .iter()
            .any(|kind| markers.get(&self.marker_name(kind, &video.name)) == Some(&video.etag))
        {
            return Ok(());
        }
        let input = self.source.address().sibling(&video.name);
        let output = self
            .outputs
            .address()
            .sibling(&output_name(&video.name, &self.options.suffix));
        let options = RunOptions {
            input: Location::Blob(input.clone()),
            output: Location::Blob(output.clone()),
            ..self.options.run.clone()
        };
        if self.options.log_to.is_some() {
            crate::logging::start_capture();
        }
        log::info!("{input}: stylizing into {output}");
        cluster.announce(&serde_json::to_vec(&Announcement::Job).expect("serializes"));
        let result = run(&options, cluster, None);
        if result.is_err() {
            crate::shutdown::halt_if_stopping();
        }
        let mut marker = Marker {
            input: input.to_string(),
            etag: video.etag.clone(),
            output: None,
            frames: None,
            seconds: None,
            error: None,
        };
        let mut abort_after_marker = None;
        let report = match result {
            Ok(Some(done)) => {
                marker.output = Some(output.to_string());
                marker.frames = Some(done.report.frames);
                marker.seconds = Some(done.report.totals.wall_s);
                summary.processed += 1;
                Some(done.report)
            }
            Ok(None) => None,
            Err(error) if error.is_poison() => {
                log::error!("{input} cannot be processed: {error}");
                marker.error = Some(crate::redact::redact(&error.to_string()));
                summary.failed += 1;
                // Found by a rank mid-run: the other ranks may be blocked, so once the marker
                // is written the job ends (and a restarted watcher skips this video).
                if matches!(error, JobError::DuringRun(_)) && cluster.size() > 1 {
                    abort_after_marker = Some(error);
                }
                None
            }
            Err(error @ JobError::DuringRun(_)) if cluster.size() > 1 => return Err(error),
            Err(error) => {
                log::error!("{input}: {error}; it will be tried again at the next poll");
                None
            }
        };
        if let Some(destination) = &self.options.log_to {
            if let Err(error) = logs::publish(
                destination,
                &logs::stem_of(&Location::Blob(input.clone())),
                report.as_ref(),
            ) {
                log::warn!("{error}");
            }
        }
        let kind = match (&marker.output, &marker.error) {
            (Some(_), _) => "done",
            (_, Some(_)) => "failed",
            _ => return Ok(()),
        };
        let body = serde_json::to_vec_pretty(&marker).expect("serializes");
        let metadata = HashMap::from([
            (OUTPUT_METADATA.0.to_string(), "marker".to_string()),
            ("source_etag".to_string(), video.etag.clone()),
        ]);
        block_on(
            self.bookkeeping(kind, &video.name)
                .put(body, false, metadata),
        )?;
        abort_after_marker.map_or(Ok(()), Err)
    }
}

/// A video someone uploaded: a video extension, not a blob stylemill wrote.
fn is_new_video(blob: &Listed) -> bool {
    let extension = blob
        .name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    !blob.name.starts_with(BOOKKEEPING)
        && !blob.metadata.contains_key(OUTPUT_METADATA.0)
        && VIDEO_EXTENSIONS.contains(&extension.as_str())
}

/// `dir/clip.mov` becomes `dir/clip-<suffix>.mp4`.
pub fn output_name(input: &str, suffix: &str) -> String {
    let (folder, file) = input.rsplit_once('/').map_or(("", input), |(f, n)| (f, n));
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    let name = format!("{stem}-{suffix}.mp4");
    if folder.is_empty() {
        name
    } else {
        format!("{folder}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_named_after_their_input() {
        assert_eq!(output_name("clip.mov", "mosaic"), "clip-mosaic.mp4");
        assert_eq!(output_name("a/b.c/clip", "udnie"), "a/b.c/clip-udnie.mp4");
    }

    #[test]
    fn only_uploaded_videos_are_candidates() {
        let listed = |name: &str, metadata: &[(&str, &str)]| Listed {
            name: name.into(),
            etag: "e".into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(is_new_video(&listed("in/x.MP4", &[])));
        assert!(!is_new_video(&listed("notes.txt", &[])));
        assert!(!is_new_video(&listed("x-mosaic.mp4", &[OUTPUT_METADATA])));
        assert!(!is_new_video(&listed(".stylemill/done/c/x.mp4", &[])));
    }
}
