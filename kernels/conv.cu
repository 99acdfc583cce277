// Convolution as an implicit GEMM: rows are output pixels (batch x out_h x out_w), columns are
// output channels, the reduction runs over (ky, kx, ci). Reflection padding and the
// deconvolutions' nearest 2x upsampling are folded into the input index of each load (no padded
// or upsampled copy exists), and the bias is added in the epilogue. Activations are NHWC f32;
// weights are packed [ky][kx][ci][co] (K x Co, row-major).
// Needs common.cuh, which the engine prepends (NVRTC is given one self-contained source).

// Both GEMM kernels come in two widths of output-channel tile, TILE_N = 64 and 32 (the
// `_n32` entry points, for the 32-channel layers, which a 64-wide tile would run twice over).
#define TILE_M 64
#define TILE_K 16

// Image, row and column of the output pixels first + 16 * i (i < ROWS) of a GEMM tile, which
// one thread loads the A rows of, and whether each exists (a tile may run past the last pixel).
template <int ROWS>
__device__ __forceinline__ void locate_rows(int first, int pixels, int out_h, int out_w,
                                            int* image, int* y, int* x, bool* exists) {
#pragma unroll
    for (int i = 0; i < ROWS; ++i) {
        const int m = first + 16 * i;
        exists[i] = m < pixels;
        const int mm = exists[i] ? m : 0;
        image[i] = mm / (out_h * out_w);
        const int r = mm % (out_h * out_w);
        y[i] = r / out_w;
        x[i] = r % out_w;
    }
}

// fp32 path (matches the golden vectors): 256 threads, each owns a 4 x (TILE_N / 16) block of
// outputs. A tile loads run along channels (16 consecutive threads read 16 consecutive floats of
// a pixel), so they coalesce for every layer whose input has 16 or more channels.
template <int TILE_N>
__device__ __forceinline__ void conv_gemm_f32(
    const float* __restrict__ input, const float* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output,
    int batch, int in_h, int in_w, int ci, int out_h, int out_w, int co,
    int k, int stride, int pad, int upsample) {
    constexpr int COLS = TILE_N / 16;
    __shared__ float a_tile[TILE_K][TILE_M + 4];
    __shared__ float b_tile[TILE_K][TILE_N + 4];
    const int pixels = batch * out_h * out_w;
    const int reduction = k * k * ci;
    const int m0 = blockIdx.x * TILE_M;
    const int n0 = blockIdx.y * TILE_N;
    const int tid = threadIdx.x;

    // This thread loads A rows a_row + 16*i at reduction column a_col.
    const int a_col = tid % TILE_K;
    const int a_row = tid / TILE_K;
    int row_b[4], row_y[4], row_x[4];
    bool row_ok[4];
    locate_rows<4>(m0 + a_row, pixels, out_h, out_w, row_b, row_y, row_x, row_ok);
    // B: row b_k, columns b_n .. b_n + COLS - 1.
    const int b_k = tid / 16;
    const int b_n = (tid % 16) * COLS;
    const int tx = tid % 16, ty = tid / 16;
    float acc[4][COLS] = {};

    for (int k0 = 0; k0 < reduction; k0 += TILE_K) {
        const int kk = k0 + a_col;
        const bool k_ok = kk < reduction;
        const int c = kk % ci, tap = kk / ci;
        const int kx = tap % k, ky = tap / k;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            float v = 0.f;
            if (k_ok && row_ok[i]) {
                v = input[conv_input_offset(row_b[i], row_y[i], row_x[i], ky, kx, c,
                                            in_h, in_w, ci, stride, pad, upsample)];
            }
            a_tile[a_col][a_row + 16 * i] = v;
        }
#pragma unroll
        for (int j = 0; j < COLS; ++j) {
            const int kr = k0 + b_k, n = n0 + b_n + j;
            b_tile[b_k][b_n + j] = (kr < reduction && n < co) ? weights[(size_t)kr * co + n] : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int t = 0; t < TILE_K; ++t) {
            float a[4], b[COLS];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = a_tile[t][ty * 4 + i];
#pragma unroll
            for (int j = 0; j < COLS; ++j) b[j] = b_tile[t][tx * COLS + j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < COLS; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty * 4 + i;
        if (m >= pixels) continue;
#pragma unroll
        for (int j = 0; j < COLS; ++j) {
            const int n = n0 + tx * COLS + j;
            if (n < co) output[(size_t)m * co + n] = acc[i][j] + bias[n];
        }
    }
}

// Tensor-core path for --precision fast: BF16 operands (rounded to nearest even while staging
// tiles in shared memory), FP32 accumulation, with the `mma.sync.m16n8k16` instruction
// (common.cuh's mma_m16n8k16_bf16; sm_80 and later; no CUDA headers needed at run time).
// 128 threads = 4 warps in a 2x2 grid; each warp owns 32 x (TILE_N / 2) outputs as
// 2 x (TILE_N / 16) MMA tiles of 16x8.
// Needs ci % TC_K == 0 and co % 4 == 0 (the engine sends other layers to the fp32 GEMM): then
// a k-tile is TC_K consecutive channels of one kernel tap, so the tap, its reflected input
// pixels and the bounds are worked out once per tile and row, not per element, and every load
// is 16 bytes. The next tile's loads are issued before this tile's MMAs (held in registers),
// so their latency hides behind the tensor cores' work.
#define TC_K 32
#define TC_PAD 8

__device__ __forceinline__ unsigned short to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// Two floats as BF16 in one 32-bit word, the first in the low half (the fragments' order).
__device__ __forceinline__ unsigned int bf16_pair(float low, float high) {
    return (unsigned int)to_bf16(low) | ((unsigned int)to_bf16(high) << 16);
}

__device__ __forceinline__ unsigned int pair(const unsigned short* p) {
    return *reinterpret_cast<const unsigned int*>(p);
}

template <int TILE_N>
__device__ __forceinline__ void conv_gemm_bf16_tc(
    const float* __restrict__ input, const float* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output,
    int batch, int in_h, int in_w, int ci, int out_h, int out_w, int co,
    int k, int stride, int pad, int upsample) {
    constexpr int WARP_N = TILE_N / 2, MMA_N = WARP_N / 8;
    // A (64 pixels x TC_K channels) is loaded as 4 rows x 4 channels per thread; B (TC_K x
    // TILE_N weights) as B_UNITS units of two k-rows x 4 columns per thread.
    constexpr int A_ROWS = 4, B_UNITS = TILE_N / 32, N_QUADS = TILE_N / 4;
    // A as [m][k] and B transposed as [n][k], so both fragments read k-pairs as one 32-bit word.
    __shared__ __align__(16) unsigned short a_tile[TILE_M][TC_K + TC_PAD];
    __shared__ __align__(16) unsigned short b_tile[TILE_N][TC_K + TC_PAD];
    const int pixels = batch * out_h * out_w;
    const int reduction = k * k * ci;
    const int m0 = blockIdx.x * TILE_M;
    const int n0 = blockIdx.y * TILE_N;
    const int tid = threadIdx.x;
    const int lane = tid % 32, warp = tid / 32;
    const int warp_m = (warp / 2) * 32, warp_n = (warp % 2) * WARP_N;
    const int group = lane / 4, in_group = lane % 4;
    float acc[2][MMA_N][4] = {};

    // This thread's A rows a_row + 16 * i, channels 4 * a_quad .. + 3 of each tile.
    const int a_quad = tid % 8, a_row = tid / 8;
    int row_b[A_ROWS], row_y[A_ROWS], row_x[A_ROWS];
    bool row_ok[A_ROWS];
    locate_rows<A_ROWS>(m0 + a_row, pixels, out_h, out_w, row_b, row_y, row_x, row_ok);
    // This thread's B units: k-rows 2 * b_pair, + 1 at columns 4 * b_quad .. + 3. Consecutive
    // lanes take consecutive k-pairs, so the transposed stores below hit distinct banks.
    int b_pair[B_UNITS], b_quad[B_UNITS];
#pragma unroll
    for (int u = 0; u < B_UNITS; ++u) {
        const int unit = tid + 128 * u;
        b_pair[u] = unit % (TC_K / 2);
        b_quad[u] = unit / (TC_K / 2);
    }

    float4 a_next[A_ROWS], b_next[B_UNITS][2];
    const float4 zero = {0.f, 0.f, 0.f, 0.f};
    const auto load_tile = [&](int k0) {
        const int tap = k0 / ci, c = k0 - tap * ci + 4 * a_quad;
        const int ky = tap / k, kx = tap - ky * k;
#pragma unroll
        for (int i = 0; i < A_ROWS; ++i) {
            a_next[i] = row_ok[i]
                ? *reinterpret_cast<const float4*>(
                      &input[conv_input_offset(row_b[i], row_y[i], row_x[i], ky, kx, c, in_h,
                                               in_w, ci, stride, pad, upsample)])
                : zero;
        }
#pragma unroll
        for (int u = 0; u < B_UNITS; ++u) {
            const int n = n0 + 4 * b_quad[u];
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const size_t kr = (size_t)(k0 + 2 * b_pair[u] + r);
                b_next[u][r] = n < co ? *reinterpret_cast<const float4*>(&weights[kr * co + n])
                                      : zero;
            }
        }
    };

    load_tile(0);
    for (int k0 = 0; k0 < reduction; k0 += TC_K) {
#pragma unroll
        for (int i = 0; i < A_ROWS; ++i) {
            const float4 v = a_next[i];
            unsigned int* to = reinterpret_cast<unsigned int*>(&a_tile[a_row + 16 * i][4 * a_quad]);
            to[0] = bf16_pair(v.x, v.y);
            to[1] = bf16_pair(v.z, v.w);
        }
#pragma unroll
        for (int u = 0; u < B_UNITS; ++u) {
            const float4 low = b_next[u][0], high = b_next[u][1];
            const int n = 4 * b_quad[u], kk = 2 * b_pair[u];
            *reinterpret_cast<unsigned int*>(&b_tile[n][kk]) = bf16_pair(low.x, high.x);
            *reinterpret_cast<unsigned int*>(&b_tile[n + 1][kk]) = bf16_pair(low.y, high.y);
            *reinterpret_cast<unsigned int*>(&b_tile[n + 2][kk]) = bf16_pair(low.z, high.z);
            *reinterpret_cast<unsigned int*>(&b_tile[n + 3][kk]) = bf16_pair(low.w, high.w);
        }
        __syncthreads();
        if (k0 + TC_K < reduction) load_tile(k0 + TC_K);
#pragma unroll
        for (int t = 0; t < TC_K; t += 16) {
            unsigned int a[2][4], b[MMA_N][2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int r = warp_m + 16 * i + group;
                a[i][0] = pair(&a_tile[r][t + 2 * in_group]);
                a[i][1] = pair(&a_tile[r + 8][t + 2 * in_group]);
                a[i][2] = pair(&a_tile[r][t + 2 * in_group + 8]);
                a[i][3] = pair(&a_tile[r + 8][t + 2 * in_group + 8]);
            }
#pragma unroll
            for (int j = 0; j < MMA_N; ++j) {
                const int n = warp_n + 8 * j + group;
                b[j][0] = pair(&b_tile[n][t + 2 * in_group]);
                b[j][1] = pair(&b_tile[n][t + 2 * in_group + 8]);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < MMA_N; ++j) mma_m16n8k16_bf16(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }
    // Accumulator layout: d0,d1 at (group, 2*in_group + {0,1}); d2,d3 eight rows below.
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < MMA_N; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int m = m0 + warp_m + 16 * i + group + (e >= 2 ? 8 : 0);
                const int n = n0 + warp_n + 8 * j + 2 * in_group + (e % 2);
                if (m < pixels && n < co) output[(size_t)m * co + n] = acc[i][j][e] + bias[n];
            }
}

// The entry points: (input, weights, bias, output, batch, in_h, in_w, ci, out_h, out_w, co, k,
// stride, pad, upsample); grid (pixel tiles of 64, channel tiles of TILE_N).
#define CONV_GEMM_ENTRY(name, body, threads, TILE_N)                                            \
    extern "C" __global__ void __launch_bounds__(threads) name(                                 \
        const float* __restrict__ input, const float* __restrict__ weights,                     \
        const float* __restrict__ bias, float* __restrict__ output, int batch, int in_h,        \
        int in_w, int ci, int out_h, int out_w, int co, int k, int stride, int pad,             \
        int upsample) {                                                                         \
        body<TILE_N>(input, weights, bias, output, batch, in_h, in_w, ci, out_h, out_w, co, k,  \
                     stride, pad, upsample);                                                    \
    }
CONV_GEMM_ENTRY(conv2d_f32, conv_gemm_f32, 256, 64)
CONV_GEMM_ENTRY(conv2d_f32_n32, conv_gemm_f32, 256, 32)
CONV_GEMM_ENTRY(conv2d_bf16_tc, conv_gemm_bf16_tc, 128, 64)
CONV_GEMM_ENTRY(conv2d_bf16_tc_n32, conv_gemm_bf16_tc, 128, 32)

// Direct convolution for the image-facing layers (stride 1, no upsampling): the first, 3 -> 32
// channels, and the last, 32 -> 3, both 9x9. As a GEMM their 3 channels fill 3 of a tile's 64
// columns (or rows of the reduction); here each thread owns PIXELS horizontally adjacent output
// pixels and all CO of their channels, a block DIRECT_TILE rows of DIRECT_TILE * PIXELS pixels
// of one image. Input channels go CHUNK at a time: the block stages the reflected input window
// and that chunk's weights in shared memory, and every thread reads the same weight at once (a
// broadcast). A thread reads each window row once into registers for all its pixels and each
// weight once for all its pixels: one pixel per thread left these kernels bound by shared-memory
// reads (99% of the L1 pipe on an H100). fp32 in both precisions.
#define DIRECT_TILE 16

template <int CO, int CHUNK, int K, int PIXELS>
__device__ __forceinline__ void conv_direct(
    const float* __restrict__ input, const float* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output,
    int in_h, int in_w, int ci, int out_h, int out_w, int pad) {
    constexpr int TILE_W = DIRECT_TILE * PIXELS, SPAN_Y = DIRECT_TILE + K - 1;
    constexpr int SPAN_X = TILE_W + K - 1, THREADS = DIRECT_TILE * DIRECT_TILE;
    constexpr int WINDOW = CHUNK * SPAN_Y * SPAN_X, TAPS = K * K * CHUNK * CO;
    constexpr int ROW = PIXELS + K - 1;
    __shared__ float window[CHUNK][SPAN_Y][SPAN_X + 1];
    __shared__ float taps[TAPS];
    const int tiles_x = (out_w + TILE_W - 1) / TILE_W;
    const int y0 = (blockIdx.x / tiles_x) * DIRECT_TILE, x0 = (blockIdx.x % tiles_x) * TILE_W;
    const int b = blockIdx.y;
    const int tid = threadIdx.x, ty = tid / DIRECT_TILE, tx = tid % DIRECT_TILE;
    const float* image = input + (size_t)b * in_h * in_w * ci;
    float acc[PIXELS][CO];
#pragma unroll
    for (int p = 0; p < PIXELS; ++p)
#pragma unroll
        for (int o = 0; o < CO; ++o) acc[p][o] = 0.f;
    for (int c0 = 0; c0 < ci; c0 += CHUNK) {
        // Staged in loops, not unrolled: unrolled, their loads all in flight at once take
        // registers enough to leave one block per SM (248 on sm_90), or spill under a bound.
        // A tile may reach past the image (a small one, or its right and bottom edges). The
        // last window position any output in the image reads is in - 1 + pad along each axis
        // (stride 1): positions past it feed only outputs that are not written, and are clamped
        // there, so that one reflection covers every read and none leaves the image.
        for (int i = tid; i < WINDOW; i += THREADS) {
            const int c = i % CHUNK, yx = i / CHUNK;
            const int y = reflect_index(min(y0 + yx / SPAN_X - pad, in_h - 1 + pad), in_h);
            const int x = reflect_index(min(x0 + yx % SPAN_X - pad, in_w - 1 + pad), in_w);
            window[c][yx / SPAN_X][yx % SPAN_X] = image[((size_t)y * in_w + x) * ci + c0 + c];
        }
        for (int i = tid; i < TAPS; i += THREADS) {
            const int o = i % CO, c = (i / CO) % CHUNK, tap = i / (CO * CHUNK);
            taps[i] = weights[((size_t)tap * ci + c0 + c) * CO + o];
        }
        __syncthreads();
        // One channel's window row at a time (unrolled over the chunk, the rows of all its
        // channels would be live at once and spill the 32-output variant's accumulators).
        for (int ky = 0; ky < K; ++ky)
#pragma unroll 1
            for (int c = 0; c < CHUNK; ++c) {
                float row[ROW];
#pragma unroll
                for (int j = 0; j < ROW; ++j) row[j] = window[c][ty + ky][tx * PIXELS + j];
#pragma unroll
                for (int kx = 0; kx < K; ++kx) {
                    const float* w = &taps[((ky * K + kx) * CHUNK + c) * CO];
#pragma unroll
                    for (int o = 0; o < CO; ++o) {
                        const float weight = w[o];
#pragma unroll
                        for (int p = 0; p < PIXELS; ++p)
                            acc[p][o] = fmaf(row[p + kx], weight, acc[p][o]);
                    }
                }
            }
        __syncthreads();
    }
    const int y = y0 + ty;
#pragma unroll
    for (int p = 0; p < PIXELS; ++p) {
        const int x = x0 + tx * PIXELS + p;
        if (y < out_h && x < out_w) {
            float* out = output + (((size_t)b * out_h + y) * out_w + x) * CO;
#pragma unroll
            for (int o = 0; o < CO; ++o) out[o] = acc[p][o] + bias[o];
        }
    }
}

// Grid (tiles of DIRECT_TILE x DIRECT_TILE * PIXELS output pixels, batch); the arguments of
// conv2d_f32, of which batch, co, k, stride and upsample are fixed by the variant (3 -> 32 and
// 32 -> 3, 9x9, stride 1). PIXELS per thread: 2 for 32 outputs (its accumulators are 64
// registers), 4 for 3 outputs.
#define CONV_DIRECT_ENTRY(name, CO, CHUNK, PIXELS)                                              \
    extern "C" __global__ void __launch_bounds__(DIRECT_TILE * DIRECT_TILE) name(               \
        const float* __restrict__ input, const float* __restrict__ weights,                     \
        const float* __restrict__ bias, float* __restrict__ output, int batch, int in_h,        \
        int in_w, int ci, int out_h, int out_w, int co, int k, int stride, int pad,             \
        int upsample) {                                                                         \
        conv_direct<CO, CHUNK, 9, PIXELS>(input, weights, bias, output, in_h, in_w, ci, out_h,  \
                                          out_w, pad);                                          \
    }
CONV_DIRECT_ENTRY(conv2d_direct_to32, 32, 3, 2)
CONV_DIRECT_ENTRY(conv2d_direct_to3, 3, 4, 4)
