// Shared device helpers for the stylemill kernels (included by every .cu file).
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
