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

// Input element (b, y, x, c) that output tap (oy, ox, ky, kx, c) of a convolution reads, after
// reflection padding by `pad` of the input, upsampled 2x (nearest) first when `upsample` is set.
// Tensors are NHWC.
__device__ __forceinline__ size_t conv_input_offset(
    int b, int oy, int ox, int ky, int kx, int c,
    int in_h, int in_w, int ci, int stride, int pad, int upsample) {
    const int virtual_h = upsample ? 2 * in_h : in_h;
    const int virtual_w = upsample ? 2 * in_w : in_w;
    int y = reflect_index(oy * stride + ky - pad, virtual_h);
    int x = reflect_index(ox * stride + kx - pad, virtual_w);
    if (upsample) {
        y >>= 1;
        x >>= 1;
    }
    return (((size_t)b * in_h + y) * in_w + x) * ci + c;
}

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
