//! The main loops of compiled kernels, read from nvdisasm's listing of their machine code (SASS):
//! what each iteration issues, for the performance budget that CI checks without a GPU
//! (tests/kernels.rs). A kernel's main loop is the innermost loop (a backward branch and its
//! target) with the most tensor-core (HMMA) or fp32 multiply-add (FFMA) instructions.

use std::path::Path;
use std::process::Command;

/// What one iteration of a kernel's main loop issues (per warp), counted from its SASS.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MainLoop {
    pub kernel: String,
    /// Instructions in the loop body, NOPs left out.
    pub instructions: usize,
    /// Tensor-core matrix multiply-adds.
    pub mma: usize,
    /// fp32 fused multiply-adds.
    pub ffma: usize,
    pub shared_loads: usize,
    pub global_loads: usize,
    /// Loops nested inside it: their bodies run more than once per iteration, so the counts
    /// above would understate the work; a main loop should have none.
    pub inner_loops: usize,
    /// Local-memory loads and stores anywhere in the kernel (spills or indexed arrays).
    pub local_memory: usize,
}

impl MainLoop {
    /// Instructions issued per tensor-core or fp32 multiply-add instruction.
    pub fn instructions_per_multiply_add(&self) -> f64 {
        self.instructions as f64 / (if self.mma > 0 { self.mma } else { self.ffma }).max(1) as f64
    }
}

/// Disassembles `cubin` with `nvdisasm` and returns each kernel's main loop.
pub fn main_loops(nvdisasm: &Path, cubin: &[u8]) -> Result<Vec<MainLoop>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("kernels.cubin");
    std::fs::write(&path, cubin).map_err(|e| e.to_string())?;
    let output = Command::new(nvdisasm)
        .arg("-c")
        .arg(&path)
        .output()
        .map_err(|e| format!("{}: {e}", nvdisasm.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(parse_listing(&String::from_utf8_lossy(&output.stdout)))
}

/// A line of the listing: a label, or an instruction with the label it branches to.
enum Line<'a> {
    Label(&'a str),
    Instruction {
        opcode: &'a str,
        target: Option<&'a str>,
    },
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim();
    if let Some(label) = line.strip_suffix(':').filter(|l| l.starts_with(".L_x_")) {
        return Some(Line::Label(label));
    }
    // "/*0280*/  @!P0 BRA `(.L_x_0) ;"
    let rest = line.strip_prefix("/*")?.split_once("*/")?.1.trim();
    let mut words = rest.split_whitespace();
    let mut opcode = words.next()?;
    if opcode.starts_with('@') {
        opcode = words.next()?;
    }
    let target = rest.find(".L_x_").map(|at| {
        let label = &rest[at..];
        &label[..label.find(')').unwrap_or(label.len())]
    });
    Some(Line::Instruction { opcode, target })
}

/// Each function's main loop in nvdisasm's listing (`.text.NAME:` starts a function).
fn parse_listing(listing: &str) -> Vec<MainLoop> {
    let mut functions: Vec<(&str, Vec<Line>)> = Vec::new();
    for raw in listing.lines() {
        if let Some(name) = raw
            .trim()
            .strip_prefix(".text.")
            .and_then(|n| n.strip_suffix(':'))
        {
            functions.push((name, Vec::new()));
        } else if let (Some((_, lines)), Some(line)) = (functions.last_mut(), parse_line(raw)) {
            lines.push(line);
        }
    }
    functions
        .into_iter()
        .map(|(name, lines)| main_loop(name, &lines))
        .collect()
}

fn main_loop(kernel: &str, lines: &[Line]) -> MainLoop {
    let label_at = |wanted: &str| {
        lines
            .iter()
            .position(|l| matches!(l, Line::Label(label) if *label == wanted))
    };
    let loops: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(end, line)| match line {
            Line::Instruction {
                opcode,
                target: Some(target),
            } if opcode.starts_with("BRA") => label_at(target)
                .filter(|&start| start < end)
                .map(|start| (start, end)),
            _ => None,
        })
        .collect();
    let opcodes = |(start, end): (usize, usize)| {
        lines[start..=end].iter().filter_map(|line| match line {
            Line::Instruction { opcode, .. } if !opcode.starts_with("NOP") => Some(*opcode),
            _ => None,
        })
    };
    let count = |span, prefix: &str| opcodes(span).filter(|o| o.starts_with(prefix)).count();
    let local_memory = opcodes((0, lines.len().saturating_sub(1)))
        .filter(|o| o.starts_with("LDL") || o.starts_with("STL"))
        .count();
    let nested = |span: (usize, usize)| {
        loops
            .iter()
            .filter(|&&(s, e)| (s, e) != span && span.0 <= s && e <= span.1)
            .count()
    };
    let work = |span| (count(span, "HMMA"), count(span, "FFMA"));
    // The innermost loop with the most multiply-adds; failing that, any loop with them (its
    // inner loops then show that the multiply-adds were not unrolled into one body).
    let best = loops
        .iter()
        .copied()
        .filter(|&span| nested(span) == 0 && work(span) != (0, 0))
        .max_by_key(|&span| work(span))
        .or_else(|| loops.iter().copied().max_by_key(|&span| work(span)));
    match best {
        Some(span) => MainLoop {
            kernel: kernel.to_string(),
            instructions: opcodes(span).count(),
            mma: count(span, "HMMA"),
            ffma: count(span, "FFMA"),
            shared_loads: count(span, "LDS"),
            global_loads: count(span, "LDG"),
            inner_loops: nested(span),
            local_memory,
        },
        None => MainLoop {
            kernel: kernel.to_string(),
            instructions: 0,
            mma: 0,
            ffma: 0,
            shared_loads: 0,
            global_loads: 0,
            inner_loops: 0,
            local_memory,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_loop_is_the_innermost_loop_with_the_most_multiply_adds() {
        let listing = "\
.text.k:
.L_x_0:
        /*0000*/                   FFMA R4, R2, R2, R4 ;
.L_x_1:
        /*0010*/                   FFMA R4, R2, R2, R4 ;
        /*0020*/                   FFMA R4, R2, R2, R4 ;
        /*0030*/               @P0 BRA `(.L_x_1) ;
        /*0040*/              @!P1 BRA `(.L_x_0) ;
        /*0050*/                   EXIT ;
";
        let found = &parse_listing(listing)[0];
        assert_eq!(
            (found.instructions, found.ffma, found.inner_loops),
            (3, 2, 0)
        );
    }

    #[test]
    fn a_main_loop_around_loops_without_multiply_adds_counts_them() {
        let listing = "\
.text.k:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   LDS R2, [R3] ;
.L_x_1:
        /*0020*/                   IADD3 R4, R2, R2, R4 ;
        /*0030*/               @P0 BRA `(.L_x_1) ;
        /*0040*/                   LDG.E R5, desc[UR4][R6.64] ;
        /*0050*/                   HMMA.16816.F32.BF16 R8, R10, R12, R8 ;
        /*0060*/                   NOP ;
        /*0070*/              @!P1 BRA `(.L_x_0) ;
        /*0080*/                   STL [R1], R2 ;
        /*0090*/                   EXIT ;
";
        assert_eq!(
            parse_listing(listing),
            vec![MainLoop {
                kernel: "k".into(),
                instructions: 6,
                mma: 1,
                ffma: 0,
                shared_loads: 1,
                global_loads: 1,
                inner_loops: 1,
                local_memory: 1,
            }]
        );
    }
}
