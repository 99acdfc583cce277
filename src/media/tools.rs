//! The ffmpeg and ffprobe this machine has: found on `PATH`, their versions read once and
//! logged, anything older than 4.4 refused, and the options each version understands (ffmpeg
//! 5.1 renamed `-vsync` to `-fps_mode`; showinfo's `checksum` switch came with 5.0). Every
//! command stylemill builds asks here rather than assuming the newest ffmpeg, so the 4.4 of
//! Ubuntu 22.04 and the Azure ML base images works as well as a current static build.

use super::MediaError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// The oldest ffmpeg stylemill runs with.
pub const MINIMUM: Version = Version {
    major: 4,
    minor: 4,
    patch: 0,
};

/// One of the two programs.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: PathBuf,
    /// The version as the program states it ("5.1.6-0+deb12u1", "n8.0-23-gd1f31a829d").
    pub stated: String,
    /// `None` for a development snapshot ("N-113567-g..."), taken to be current.
    pub version: Option<Version>,
}

impl Program {
    fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version.is_none_or(|v| {
            v >= Version {
                major,
                minor,
                patch: 0,
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct Tools {
    pub ffmpeg: Program,
    pub ffprobe: Program,
}

impl Tools {
    /// The arguments that pass every decoded frame through with its timestamp, none dropped
    /// or repeated.
    pub fn passthrough(&self) -> [&'static str; 2] {
        if self.ffmpeg.at_least(5, 1) {
            ["-fps_mode", "passthrough"]
        } else {
            ["-vsync", "passthrough"]
        }
    }

    /// The filter that reports each frame's timestamp, without checksums where it can.
    pub fn showinfo(&self) -> &'static str {
        if self.ffmpeg.at_least(5, 0) {
            "showinfo=checksum=0"
        } else {
            "showinfo"
        }
    }
}

static FOUND: OnceLock<Tools> = OnceLock::new();

/// The ffmpeg and ffprobe on `PATH`, checked once per process; the first check logs them.
pub fn tools() -> Result<&'static Tools, MediaError> {
    if let Some(found) = FOUND.get() {
        return Ok(found);
    }
    let ffmpeg = program("ffmpeg", &ffmpeg_sidecar::paths::ffmpeg_path())?;
    let ffprobe = program("ffprobe", &ffmpeg_sidecar::ffprobe::ffprobe_path())?;
    log::info!(
        "ffmpeg {} ({}), ffprobe {} ({})",
        ffmpeg.stated,
        ffmpeg.path.display(),
        ffprobe.stated,
        ffprobe.path.display()
    );
    Ok(FOUND.get_or_init(|| Tools { ffmpeg, ffprobe }))
}

/// Runs `path -version` and reads the version it states; refuses a missing or too old one.
fn program(name: &'static str, path: &Path) -> Result<Program, MediaError> {
    let output = crate::shutdown::detach_from_terminal(&mut std::process::Command::new(path))
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let banner = match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        _ => return Err(MediaError::FfmpegMissing { program: name }),
    };
    let stated = banner
        .split_whitespace()
        .skip_while(|word| *word != "version")
        .nth(1)
        .unwrap_or("unknown")
        .to_string();
    let version = parse_version(&stated);
    if version.is_some_and(|v| v < MINIMUM) {
        return Err(MediaError::FfmpegTooOld {
            program: name,
            found: stated,
            path: which(path),
        });
    }
    Ok(Program {
        path: which(path),
        stated,
        version,
    })
}

/// The full path of a program found on `PATH`.
fn which(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

/// "5.1.6-0+deb12u1", "6.0-static", "n8.0-23-g..." and "4.4.2-0ubuntu0.22.04.1" give their
/// version; a development snapshot ("N-113567-g...") gives `None`.
fn parse_version(stated: &str) -> Option<Version> {
    let digits: &str = stated.strip_prefix('n').unwrap_or(stated);
    let numeric: String = digits
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    Some(Version {
        major,
        minor: parts.next().flatten().unwrap_or(0),
        patch: parts.next().flatten().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(major: u32, minor: u32, patch: u32) -> Option<Version> {
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    #[test]
    fn versions_parse_as_distributions_and_static_builds_state_them() {
        assert_eq!(parse_version("5.1.6-0+deb12u1"), version(5, 1, 6));
        assert_eq!(parse_version("4.4.2-0ubuntu0.22.04.1"), version(4, 4, 2));
        assert_eq!(parse_version("6.0-static"), version(6, 0, 0));
        assert_eq!(
            parse_version("n8.0-23-gd1f31a829d-20251022"),
            version(8, 0, 0)
        );
        assert_eq!(parse_version("7.1"), version(7, 1, 0));
        assert_eq!(parse_version("N-113567-g0123abcd"), None);
        assert!(version(4, 2, 2).unwrap() < MINIMUM && MINIMUM <= version(4, 4, 0).unwrap());
    }

    #[test]
    fn options_follow_the_version() {
        let program = |version| Program {
            path: PathBuf::from("ffmpeg"),
            stated: String::new(),
            version,
        };
        let tools = |version| Tools {
            ffmpeg: program(version),
            ffprobe: program(version),
        };
        assert_eq!(
            tools(version(4, 4, 2)).passthrough(),
            ["-vsync", "passthrough"]
        );
        assert_eq!(tools(version(4, 4, 2)).showinfo(), "showinfo");
        assert_eq!(
            tools(version(5, 0, 1)).passthrough(),
            ["-vsync", "passthrough"]
        );
        assert_eq!(
            tools(version(5, 1, 0)).passthrough(),
            ["-fps_mode", "passthrough"]
        );
        assert_eq!(tools(None).showinfo(), "showinfo=checksum=0");
    }
}
