//! NVRTC, the CUDA runtime compiler, loaded by stylemill itself. cudarc's loader looks only for
//! the major version it was built against (`libnvrtc.so.12`), and a machine with the CUDA 13
//! toolkit has `libnvrtc.so.13` only: so every NVRTC from 12 on is looked for by name, newest
//! first, or in `STYLEMILL_NVRTC_DIR`, and the one loaded is logged with its version.

use super::kernels::KernelError;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

/// The names NVRTC goes by, newest first.
const NAMES: [&str; 3] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

type Program = *mut c_void;
type Status = c_int;
type CreateProgram = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> Status;
type CompileProgram = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Status;
type SizeOf = unsafe extern "C" fn(Program, *mut usize) -> Status;
type CopyOut = unsafe extern "C" fn(Program, *mut c_char) -> Status;

/// A loaded NVRTC: the library and the entry points stylemill calls.
pub struct Nvrtc {
    /// Where it was found: a path, or the name the dynamic loader resolved.
    pub location: String,
    /// (major, minor), as NVRTC reports it.
    pub version: (i32, i32),
    num_supported_archs: unsafe extern "C" fn(*mut c_int) -> Status,
    supported_archs: unsafe extern "C" fn(*mut c_int) -> Status,
    create_program: CreateProgram,
    compile_program: CompileProgram,
    log_size: SizeOf,
    log: CopyOut,
    ptx_size: SizeOf,
    ptx: CopyOut,
    cubin_size: SizeOf,
    cubin: CopyOut,
    destroy_program: unsafe extern "C" fn(*mut Program) -> Status,
    // Keeps the entry points above valid for the life of the process.
    _library: libloading::Library,
}

/// What a compilation produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// PTX text for a virtual architecture, which the driver translates at load.
    Ptx,
    /// Machine code for one real architecture.
    Cubin,
}

/// The process's NVRTC, loaded on first use.
pub fn nvrtc() -> Result<&'static Nvrtc, KernelError> {
    static LOADED: OnceLock<Option<Nvrtc>> = OnceLock::new();
    LOADED
        .get_or_init(load)
        .as_ref()
        .ok_or(KernelError::NvrtcMissing)
}

fn load() -> Option<Nvrtc> {
    let candidates: Vec<String> = std::env::var_os("STYLEMILL_NVRTC_DIR")
        .map(|dir| {
            NAMES
                .iter()
                .map(|name| Path::new(&dir).join(name).to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(NAMES.iter().map(|name| name.to_string()))
        .collect();
    candidates.into_iter().find_map(|location| {
        // SAFETY: loading NVRTC runs only its initialisers.
        let library = unsafe { libloading::Library::new(&location) }.ok()?;
        // SAFETY: the symbols have NVRTC's documented signatures, which these types follow.
        let nvrtc = unsafe { Nvrtc::bind(library, location) };
        match nvrtc {
            Ok(nvrtc) => {
                log::info!(
                    "NVRTC {}.{} ({})",
                    nvrtc.version.0,
                    nvrtc.version.1,
                    nvrtc.location
                );
                Some(nvrtc)
            }
            Err(error) => {
                log::warn!("{error}");
                None
            }
        }
    })
}

impl Nvrtc {
    unsafe fn bind(library: libloading::Library, location: String) -> Result<Nvrtc, String> {
        macro_rules! bind {
            ($name:literal) => {
                *library
                    .get($name.as_bytes())
                    .map_err(|e| format!("{location} is not a usable NVRTC ({}: {e})", $name))?
            };
        }
        let version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Status = bind!("nvrtcVersion");
        let (mut major, mut minor) = (0, 0);
        version(&mut major, &mut minor);
        Ok(Nvrtc {
            version: (major, minor),
            num_supported_archs: bind!("nvrtcGetNumSupportedArchs"),
            supported_archs: bind!("nvrtcGetSupportedArchs"),
            create_program: bind!("nvrtcCreateProgram"),
            compile_program: bind!("nvrtcCompileProgram"),
            log_size: bind!("nvrtcGetProgramLogSize"),
            log: bind!("nvrtcGetProgramLog"),
            ptx_size: bind!("nvrtcGetPTXSize"),
            ptx: bind!("nvrtcGetPTX"),
            cubin_size: bind!("nvrtcGetCUBINSize"),
            cubin: bind!("nvrtcGetCUBIN"),
            destroy_program: bind!("nvrtcDestroyProgram"),
            location,
            _library: library,
        })
    }

    /// The real architectures this NVRTC compiles machine code for (`90` for sm_90).
    pub fn supported_architectures(&self) -> Vec<u32> {
        let mut count = 0;
        // SAFETY: NVRTC writes `count` numbers into a buffer of that many.
        unsafe {
            if (self.num_supported_archs)(&mut count) != 0 {
                return Vec::new();
            }
            let mut archs = vec![0; count.max(0) as usize];
            if (self.supported_archs)(archs.as_mut_ptr()) != 0 {
                return Vec::new();
            }
            archs.into_iter().map(|a| a as u32).collect()
        }
    }

    /// Compiles `source` (named `name` in messages) with `options`; on failure, NVRTC's log.
    pub fn compile(
        &self,
        name: &str,
        source: &str,
        options: &[String],
        output: Output,
    ) -> Result<Vec<u8>, String> {
        let text = CString::new(source).map_err(|_| "the source holds a NUL".to_string())?;
        let name = CString::new(name).map_err(|_| "the name holds a NUL".to_string())?;
        let options: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()).expect("options hold no NUL"))
            .collect();
        let option_pointers: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let mut program: Program = std::ptr::null_mut();
        // SAFETY: the strings outlive the calls; every buffer is sized by NVRTC's own report;
        // the program is destroyed once, at the end.
        unsafe {
            let status = (self.create_program)(
                &mut program,
                text.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            if status != 0 {
                return Err(format!(
                    "NVRTC could not create a program (status {status})"
                ));
            }
            let compiled = (self.compile_program)(
                program,
                option_pointers.len() as c_int,
                option_pointers.as_ptr(),
            );
            let result = if compiled == 0 {
                let (size, copy) = match output {
                    Output::Ptx => (self.ptx_size, self.ptx),
                    Output::Cubin => (self.cubin_size, self.cubin),
                };
                self.copy_out(program, size, copy)
                    .ok_or_else(|| format!("NVRTC compiled but gave no {output:?}"))
                    .map(|mut bytes| {
                        if output == Output::Ptx {
                            // PTX comes NUL-terminated.
                            bytes.retain(|&b| b != 0);
                        }
                        bytes
                    })
            } else {
                let log = self
                    .copy_out(program, self.log_size, self.log)
                    .map(|bytes| {
                        CStr::from_bytes_until_nul(&bytes)
                            .map(|log| log.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                Err(log)
            };
            (self.destroy_program)(&mut program);
            result
        }
    }

    unsafe fn copy_out(&self, program: Program, size: SizeOf, copy: CopyOut) -> Option<Vec<u8>> {
        let mut length = 0usize;
        if size(program, &mut length) != 0 {
            return None;
        }
        let mut bytes = vec![0u8; length];
        (copy(program, bytes.as_mut_ptr().cast()) == 0).then_some(bytes)
    }
}
