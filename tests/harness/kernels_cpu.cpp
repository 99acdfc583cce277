// The CUDA kernels' own source built for the CPU (kernels/emulation.h), with one C entry point
// per kernel taking its launch shape and arguments, for tests/kernels_cpu.rs.
#define STYLEMILL_CPU_EMULATION
#include "emulation.h"
#include "common.cuh"
#include "conv.cu"
#include "norm.cu"
#include "frame.cu"

using emulation::launch;

// Only the entry points are exported (the build hides everything else), so that harnesses
// built from other sources and loaded beside this one never share its kernels or globals.
#define ENTRY extern "C" __attribute__((visibility("default")))

// kernel: the engine's ConvKernel (0 fp32 GEMM, 1 tensor-core GEMM, 2 and 3 direct, 4 and 5
// the GEMMs with 32-wide channel tiles, 6 and 7 the last and first layers direct on the tensor
// cores); input: f32, or BF16 for 1, 5 and 6; weights: f32, or BF16 for 1, 5, 6 and 7; the GEMMs also write InstanceNorm's partial sums into `partial` unless it is
// null; ints: batch, in_h, in_w, ci, out_h, out_w, co, k, stride, pad, upsample.
ENTRY void emu_conv2d(int kernel_number, unsigned grid_x, unsigned grid_y, unsigned threads,
                      const void* input, const void* weights, const float* bias, float* output,
                      double* partial, const int* n) {
    const dim3 grid{grid_x, grid_y, 1}, block{threads, 1, 1};
    const auto gemm = [&](auto kernel, auto element) {
        using Element = decltype(element);
        launch(grid, block, kernel, static_cast<const Element*>(input),
               static_cast<const Element*>(weights), bias, output, partial, n[0], n[1], n[2],
               n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10]);
    };
    const auto direct = [&](auto kernel, auto input_element, auto weight_element) {
        using Input = decltype(input_element);
        using Weight = decltype(weight_element);
        launch(grid, block, kernel, static_cast<const Input*>(input),
               static_cast<const Weight*>(weights), bias, output, n[0], n[1], n[2], n[3], n[4],
               n[5], n[6], n[7], n[8], n[9], n[10]);
    };
    const unsigned short bf16 = 0;
    switch (kernel_number) {
        case 0: return gemm(conv2d_f32, 0.f);
        case 1: return gemm(conv2d_bf16_tc, (unsigned short)0);
        case 2: return direct(conv2d_direct_to32, 0.f, 0.f);
        case 3: return direct(conv2d_direct_to3, 0.f, 0.f);
        case 4: return gemm(conv2d_f32_n32, 0.f);
        case 5: return gemm(conv2d_bf16_tc_n32, (unsigned short)0);
        case 6: return direct(conv2d_direct_to3_tc, bf16, bf16);
        case 7: return direct(conv2d_direct_to32_tc, 0.f, bf16);
    }
    std::fprintf(stderr, "emu_conv2d: no kernel number %d\n", kernel_number);
    std::abort();
}

ENTRY void emu_norm_partial_sums(unsigned grid_x, unsigned grid_y, unsigned threads, const float* x,
                           double* partial, int hw, int c, int segment_pixels) {
    launch(dim3{grid_x, grid_y, 1}, dim3{threads, 1, 1}, norm_partial_sums, x, partial, hw, c,
           segment_pixels);
}

ENTRY void emu_norm_finalize(unsigned grid_x, unsigned threads, const double* partial,
                       const float* gamma, const float* beta, float* scale_shift, int batch,
                       int segments, int hw, int c) {
    launch(dim3{grid_x, 1, 1}, dim3{threads, 1, 1}, norm_finalize, partial, gamma, beta,
           scale_shift, batch, segments, hw, c);
}

ENTRY void emu_norm_apply(unsigned grid_x, unsigned grid_y, unsigned threads, float* x,
                          const float* scale_shift, const float* residual,
                          unsigned short* bf16_out, int image_quads, int c, int mode,
                          int in_place) {
    launch(dim3{grid_x, grid_y, 1}, dim3{threads, 1, 1}, norm_apply, x, scale_shift, residual,
           bf16_out, image_quads, c, mode, in_place);
}

ENTRY void emu_rgb8_to_f32(unsigned grid_x, unsigned threads, const unsigned char* src, float* dst,
                     size_t count) {
    launch(dim3{grid_x, 1, 1}, dim3{threads, 1, 1}, rgb8_to_f32, src, dst, count);
}

ENTRY void emu_f32_to_rgb8(unsigned grid_x, unsigned threads, const float* src, unsigned char* dst,
                     int batch, int src_h, int src_w, int h, int w) {
    launch(dim3{grid_x, 1, 1}, dim3{threads, 1, 1}, f32_to_rgb8, src, dst, batch, src_h, src_w,
           h, w);
}
