// Shared device helpers for the stylemill kernels (included by every .cu file). Every piece of
// inline PTX and every warp-level operation is behind a wrapper here with a CPU twin, so that
// the kernels' own source also runs on the CPU (kernels/emulation.h, STYLEMILL_CPU_EMULATION),
// where the twin follows the PTX ISA's fragment layouts exactly.
#pragma once

// Index into a reflected axis of length `len` (PyTorch's ReflectionPad2d: no edge repeat).
__device__ __forceinline__ int reflect_index(int i, int len) {
    if (i < 0) return -i;
    if (i >= len) return 2 * (len - 1) - i;
    return i;
}

// A float as BF16 (its upper 16 bits), rounded to nearest even.
__device__ __forceinline__ unsigned short to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// Input pixel (b, y, x), as an index into the batch's pixels, that output tap (oy, ox, ky, kx)
// of a convolution reads, after reflection padding by `pad` of the input, upsampled 2x
// (nearest) first when `upsample` is set.
__device__ __forceinline__ size_t conv_input_pixel(
    int b, int oy, int ox, int ky, int kx,
    int in_h, int in_w, int stride, int pad, int upsample) {
    const int virtual_h = upsample ? 2 * in_h : in_h;
    const int virtual_w = upsample ? 2 * in_w : in_w;
    int y = reflect_index(oy * stride + ky - pad, virtual_h);
    int x = reflect_index(ox * stride + kx - pad, virtual_w);
    if (upsample) {
        y >>= 1;
        x >>= 1;
    }
    return ((size_t)b * in_h + y) * in_w + x;
}

// The element of channel c of that pixel in an NHWC tensor of ci channels.
__device__ __forceinline__ size_t conv_input_offset(
    int b, int oy, int ox, int ky, int kx, int c,
    int in_h, int in_w, int ci, int stride, int pad, int upsample) {
    return conv_input_pixel(b, oy, ox, ky, kx, in_h, in_w, stride, pad, upsample) * ci + c;
}

// The shared-memory address (a 32-bit offset in the shared window) of a generic pointer to
// shared memory, as cp.async and ldmatrix take it.
#ifndef STYLEMILL_CPU_EMULATION
__device__ __forceinline__ unsigned int shared_address(const void* p) {
    unsigned int address;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }"
        : "=r"(address)
        : "l"(p));
    return address;
}
#endif

// Shared memory is addressed as an array and a byte offset in it, kept apart so that the
// address arithmetic stays 32-bit (a generic pointer per access costs 64-bit arithmetic).

// Copies 16 bytes from global memory to `offset` bytes into the shared array `shared`,
// asynchronously (`cp.async.cg`, sm_80 and later: through L2 only, no registers), or writes 16
// zero bytes there when `valid` is false (the source is then not read). The copy lands no
// sooner than the wait for its group (cp_async_wait).
#ifndef STYLEMILL_CPU_EMULATION
__device__ __forceinline__ void cp_async_16(void* shared, int offset, const void* global,
                                            bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :
                 : "r"(shared_address(shared) + offset), "l"(global), "r"(valid ? 16 : 0)
                 : "memory");
}

// Closes this thread's group of copies issued since the last commit (possibly none).
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most PENDING of this thread's committed groups are still in flight: the
// others have landed. Other threads' copies need a barrier after it to be seen.
template <int PENDING>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}

// Loads four 8x8 matrices of 16-bit elements from the shared array `shared`, one per register
// (`ldmatrix.x4`): lane 8q + r gives the byte offset of row r of matrix q (16 contiguous
// bytes), and lane l receives, in register q, elements 2 (l % 4) and 2 (l % 4) + 1 of row
// l / 4 of matrix q: exactly the layout of an mma.sync fragment.
__device__ __forceinline__ void ldmatrix_x4(unsigned int* r, const void* shared, int offset) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(shared) + offset));
}
#else
// The CPU twins. A copy is recorded with its thread and performed when that thread waits for
// its group, never before, so a read of a tile before its wait reads stale shared memory, as it
// may on a GPU.
inline void cp_async_16(void* shared, int offset, const void* global, bool valid) {
    emulation::this_thread_copies().open.push_back(
        {static_cast<unsigned char*>(shared) + offset, valid ? global : nullptr});
}

inline void cp_async_commit() { emulation::this_thread_copies().commit(); }

template <int PENDING>
inline void cp_async_wait() {
    emulation::this_thread_copies().land_all_but(PENDING);
}

// The lanes publish their row addresses, meet, and each reads its four words from the rows
// its layout names.
inline void ldmatrix_x4(unsigned int* r, const void* shared, int offset) {
    emulation::Warp& warp = emulation::this_warp();
    const int lane = emulation::lane();
    warp.rows[lane] = static_cast<const unsigned char*>(shared) + offset;
    emulation::meet_warp();
    for (int q = 0; q < 4; ++q)
        std::memcpy(&r[q], warp.rows[8 * q + lane / 4] + 4 * (lane % 4), sizeof r[q]);
    emulation::meet_warp();
}
#endif

// Two adjacent BF16 values from global memory, the first in the low half (as an mma.sync
// fragment register holds them); `p` is 4-byte aligned.
#ifndef STYLEMILL_CPU_EMULATION
__device__ __forceinline__ unsigned int bf16_pair(const unsigned short* p) {
    return __ldg(reinterpret_cast<const unsigned int*>(p));
}
#else
inline unsigned int bf16_pair(const unsigned short* p) {
    unsigned int pair;
    std::memcpy(&pair, p, sizeof pair);
    return pair;
}
#endif

// The value `v` of lane (this lane xor `lanes`), for a reduction across a warp.
#ifndef STYLEMILL_CPU_EMULATION
__device__ __forceinline__ double shfl_xor(double v, int lanes) {
    return __shfl_xor_sync(0xffffffffu, v, lanes);
}
#else
inline double shfl_xor(double v, int lanes) {
    emulation::Warp& warp = emulation::this_warp();
    const int lane = emulation::lane();
    warp.values[lane] = v;
    emulation::meet_warp();
    const double partner = warp.values[lane ^ lanes];
    emulation::meet_warp();
    return partner;
}
#endif

// D = A x B + D for one warp: A 16x16 and B 16x8 in BF16 (two per 32-bit register, the lower
// index in the low half), D 16x8 in FP32; `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32`.
// Lane l (group g = l / 4, t = l % 4) holds A at columns 2t, 2t + 1 of row g (a[0]), row g + 8
// (a[1]), and at columns 2t + 8, 2t + 9 of row g (a[2]) and row g + 8 (a[3]); B at rows (k) 2t,
// 2t + 1 (b[0]) and 2t + 8, 2t + 9 (b[1]) of column g; D at columns 2t, 2t + 1 of row g (d[0],
// d[1]) and row g + 8 (d[2], d[3]).
#ifndef STYLEMILL_CPU_EMULATION
__device__ __forceinline__ void mma_m16n8k16_bf16(float* d, const unsigned int* a,
                                                  const unsigned int* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
// The CPU twin: the warp's lanes publish their fragments, meet, and each computes its own four
// elements of D from the whole A and B, summing over k in order in FP32.
inline void mma_m16n8k16_bf16(float* d, const unsigned int* a, const unsigned int* b) {
    emulation::Warp& warp = emulation::this_warp();
    const int lane = emulation::lane();
    for (int r = 0; r < 4; ++r) warp.a[lane][r] = a[r];
    for (int r = 0; r < 2; ++r) warp.b[lane][r] = b[r];
    emulation::meet_warp();
    const auto bf16 = [](unsigned int reg, int half) {
        return emulation::bits_to_float((half ? reg >> 16 : reg & 0xffffu) << 16);
    };
    // Element (row, k) of A and (k, col) of B, read from the lane and register that hold it.
    const auto a_at = [&](int row, int k) {
        const int holder = (row % 8) * 4 + (k % 8) / 2;
        const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        return bf16(warp.a[holder][reg], k % 2);
    };
    const auto b_at = [&](int k, int col) {
        const int holder = col * 4 + (k % 8) / 2;
        return bf16(warp.b[holder][k >= 8 ? 1 : 0], k % 2);
    };
    const int group = lane / 4, in_group = lane % 4;
    for (int e = 0; e < 4; ++e) {
        const int row = group + (e >= 2 ? 8 : 0), col = 2 * in_group + e % 2;
        float sum = d[e];
        for (int k = 0; k < 16; ++k) sum = std::fma(a_at(row, k), b_at(k, col), sum);
        d[e] = sum;
    }
    emulation::meet_warp();
}
#endif
