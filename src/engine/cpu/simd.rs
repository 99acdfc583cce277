//! A minimal vector type for the convolution kernels: one trait, implemented with AVX-512 and
//! AVX2+FMA intrinsics and with plain arrays elsewhere, so each kernel is written once.
//!
//! All methods are `#[inline(always)]`: they only become the intended instructions when inlined
//! into a function compiled with the matching `#[target_feature]`.

pub trait Vector: Copy {
    const LANES: usize;
    /// # Safety
    /// `ptr` must be valid for reading `LANES` floats, and the vector's features available.
    unsafe fn load(ptr: *const f32) -> Self;
    /// # Safety
    /// The vector's instruction set must be available.
    unsafe fn splat(value: f32) -> Self;
    /// `self * b + acc`
    /// # Safety
    /// The vector's instruction set must be available.
    unsafe fn mul_add(self, b: Self, acc: Self) -> Self;
    /// # Safety
    /// `ptr` must be valid for writing `LANES` floats.
    unsafe fn store(self, ptr: *mut f32);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Vector;
    use std::arch::x86_64::*;

    impl Vector for __m512 {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn load(ptr: *const f32) -> Self {
            _mm512_loadu_ps(ptr)
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> Self {
            _mm512_set1_ps(value)
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, acc: Self) -> Self {
            _mm512_fmadd_ps(self, b, acc)
        }
        #[inline(always)]
        unsafe fn store(self, ptr: *mut f32) {
            _mm512_storeu_ps(ptr, self)
        }
    }

    impl Vector for __m256 {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn load(ptr: *const f32) -> Self {
            _mm256_loadu_ps(ptr)
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> Self {
            _mm256_set1_ps(value)
        }
        #[inline(always)]
        unsafe fn mul_add(self, b: Self, acc: Self) -> Self {
            _mm256_fmadd_ps(self, b, acc)
        }
        #[inline(always)]
        unsafe fn store(self, ptr: *mut f32) {
            _mm256_storeu_ps(ptr, self)
        }
    }
}

/// Four lanes in plain Rust, which the compiler maps to SSE or NEON.
#[derive(Clone, Copy)]
pub struct Portable([f32; 4]);

impl Vector for Portable {
    const LANES: usize = 4;
    #[inline(always)]
    unsafe fn load(ptr: *const f32) -> Self {
        Portable(std::ptr::read_unaligned(ptr as *const [f32; 4]))
    }
    #[inline(always)]
    unsafe fn splat(value: f32) -> Self {
        Portable([value; 4])
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, acc: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] * b.0[i] + acc.0[i]))
    }
    #[inline(always)]
    unsafe fn store(self, ptr: *mut f32) {
        std::ptr::write_unaligned(ptr as *mut [f32; 4], self.0)
    }
}
