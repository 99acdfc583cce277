// Convolution as an implicit GEMM: rows are output pixels (batch x out_h x out_w), columns are
// output channels, the reduction runs over (ky, kx, ci). Reflection padding and the
// deconvolutions' nearest 2x upsampling are folded into the input index of each load (no padded
// or upsampled copy exists), and the bias is added in the epilogue, which also sums each output
// channel for the InstanceNorm after it. Activations are NHWC; the outputs are f32.
// Needs common.cuh, which the engine prepends (NVRTC is given one self-contained source).

// Both GEMM kernels come in two widths of output-channel tile, TILE_N = 64 and 32 (the
// `_n32` entry points, for the 32-channel layers, which a 64-wide tile would run twice over).
// The fp32 GEMM's tile of output pixels:
#define TILE_M 64
#define TILE_K 16

// Image, row and column of the output pixels first + STEP * i (i < ROWS) of a GEMM tile, which
// one thread loads the A rows of, and whether each exists (a tile may run past the last pixel).
template <int ROWS, int STEP>
__device__ __forceinline__ void locate_rows(int first, int pixels, int out_h, int out_w,
                                            int* image, int* y, int* x, bool* exists) {
#pragma unroll
    for (int i = 0; i < ROWS; ++i) {
        const int m = first + STEP * i;
        exists[i] = m < pixels;
        const int mm = exists[i] ? m : 0;
        image[i] = mm / (out_h * out_w);
        const int r = mm % (out_h * out_w);
        y[i] = r / out_w;
        x[i] = r % out_w;
    }
}

// A GEMM block covers TILE pixels of one image, never two, so that its epilogue can sum each
// output channel over its pixels for the InstanceNorm after the convolution; the grid is
// (batch x blocks per image, channel tiles), and blockIdx.x is the block's segment in
// norm_finalize's layout. The block's first pixel, and the end of its image.
template <int TILE>
__device__ __forceinline__ void block_pixels(int out_h, int out_w, int* first, int* end) {
    const int image_pixels = out_h * out_w;
    const int per_image = (image_pixels + TILE - 1) / TILE;
    const int image = blockIdx.x / per_image;
    *first = image * image_pixels + (blockIdx.x - image * per_image) * TILE;
    *end = (image + 1) * image_pixels;
}

// The epilogue's part of InstanceNorm, when `partial` is not null: each thread holds the sums
// and the sums of squares over its rows of COLUMNS of the block's columns (`columns`, within
// the tile); the lanes of a warp that hold other rows of the same columns differ in the lane
// bits from ROW_LANES up (a butterfly over those leaves every lane with the same bits), and the
// warps holding the same columns are numbered by `slot`, of SLOTS. The block's sums, added in
// slot order, are written as its segment (blockIdx.x) of `partial`, norm_partial_sums' layout.
template <int COLUMNS, int SLOTS, int TILE_N, int ROW_LANES>
__device__ __forceinline__ void write_block_statistics(double* sums, double* squares,
                                                       const int* columns, int slot, int n0,
                                                       int co, double* __restrict__ partial) {
    __shared__ double slot_sums[SLOTS][TILE_N][2];
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int c = 0; c < COLUMNS; ++c) {
#pragma unroll
        for (int lanes = ROW_LANES; lanes < 32; lanes *= 2) {
            sums[c] += shfl_xor(sums[c], lanes);
            squares[c] += shfl_xor(squares[c], lanes);
        }
        if (lane < ROW_LANES) {
            slot_sums[slot][columns[c]][0] = sums[c];
            slot_sums[slot][columns[c]][1] = squares[c];
        }
    }
    __syncthreads();
    const int n = threadIdx.x;
    if (n < TILE_N && n0 + n < co) {
        double sum = 0.0, square = 0.0;
#pragma unroll
        for (int s = 0; s < SLOTS; ++s) {
            sum += slot_sums[s][n][0];
            square += slot_sums[s][n][1];
        }
        double* out = partial + (size_t)blockIdx.x * 2 * co;
        out[n0 + n] = sum;
        out[co + n0 + n] = square;
    }
}

// fp32 path (matches the golden vectors): 256 threads, each owns a 4 x (TILE_N / 16) block of
// the block's outputs (TILE_M pixels of one image). A tile loads run along channels (16
// consecutive threads read 16 consecutive floats of a pixel), so they coalesce for every layer
// whose input has 16 or more channels.
template <int TILE_N>
__device__ __forceinline__ void conv_gemm_f32(
    const float* __restrict__ input, const float* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output, double* __restrict__ partial,
    int in_h, int in_w, int ci, int out_h, int out_w, int co, int k, int stride, int pad,
    int upsample) {
    constexpr int COLS = TILE_N / 16;
    __shared__ float a_tile[TILE_K][TILE_M + 4];
    __shared__ float b_tile[TILE_K][TILE_N + 4];
    int m0, end;
    block_pixels<TILE_M>(out_h, out_w, &m0, &end);
    const int reduction = k * k * ci;
    const int n0 = blockIdx.y * TILE_N;
    const int tid = threadIdx.x;

    // This thread loads A rows a_row + 16*i at reduction column a_col.
    const int a_col = tid % TILE_K;
    const int a_row = tid / TILE_K;
    int row_b[4], row_y[4], row_x[4];
    bool row_ok[4];
    locate_rows<4, 16>(m0 + a_row, end, out_h, out_w, row_b, row_y, row_x, row_ok);
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
    // This thread's columns tx * COLS + j, and their sums over its rows for InstanceNorm.
    double sums[COLS] = {}, squares[COLS] = {};
    int columns[COLS];
#pragma unroll
    for (int j = 0; j < COLS; ++j) columns[j] = tx * COLS + j;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty * 4 + i;
        if (m >= end) continue;
#pragma unroll
        for (int j = 0; j < COLS; ++j) {
            const int n = n0 + columns[j];
            if (n < co) {
                const float y = acc[i][j] + bias[n];
                output[(size_t)m * co + n] = y;
                sums[j] += y;
                squares[j] += (double)y * y;
            }
        }
    }
    // A warp's lanes 0-15 and 16-31 hold other rows of the same columns; every warp holds all
    // TILE_N columns.
    if (partial)
        write_block_statistics<COLS, 8, TILE_N, 16>(sums, squares, columns, tid / 32, n0, co,
                                                    partial);
}

// Tensor-core path for --precision fast: BF16 operands, FP32 accumulation, with the
// `mma.sync.m16n8k16` instruction (common.cuh's mma_m16n8k16_bf16; sm_80 and later; no CUDA
// headers needed at run time). Its operands are BF16 already: the activations NHWC, written so
// by the InstanceNorm before (norm_apply's bf16 output), and the weights packed once at load as
// [co][ky][kx][ci] (Co x K, each output channel's reduction contiguous).
// Needs ci % TC_K == 0 (the engine sends other layers to the fp32 GEMM): then a k-tile is TC_K
// consecutive channels of one kernel tap, 64 bytes of one input pixel, so the tap and its
// reflected input pixels are worked out once per tile and row, and every load is a 16-byte
// cp.async straight into shared memory. Tiles go through a ring of TC_STAGES buffers, so the
// copies of the next TC_STAGES - 1 tiles are in flight while the tensor cores work on this one,
// and one barrier per tile orders both the ring's reuse and its reads. Fragments are read with
// ldmatrix. Rows are padded by TC_PAD elements: 80 bytes apart, the eight 16-byte rows an
// ldmatrix phase reads (and a cp.async phase writes) fall in distinct banks.
// 128 threads = 4 warps, WARPS_M x (4 / WARPS_M); a block computes TC_TILE_M pixels of one
// image x TILE_N channels, each warp (TC_TILE_M / WARPS_M) x (TILE_N * WARPS_M / 4) of them as
// 16x8 MMA tiles.
#define TC_TILE_M 128
#define TC_K 32
#define TC_PAD 8
#define TC_STAGES 3
#define TC_THREADS 128

template <int TILE_N, int WARPS_M>
__device__ __forceinline__ void conv_gemm_bf16_tc(
    const unsigned short* __restrict__ input, const unsigned short* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output, double* __restrict__ partial,
    int in_h, int in_w, int ci, int out_h, int out_w, int co, int k, int stride, int pad,
    int upsample) {
    constexpr int WARPS_N = 4 / WARPS_M;
    constexpr int WARP_M = TC_TILE_M / WARPS_M, WARP_N = TILE_N / WARPS_N;
    constexpr int MMA_M = WARP_M / 16, MMA_N = WARP_N / 8;
    // A k-tile row is TC_K * 2 bytes = 4 chunks of 16 bytes; a thread copies chunk `part` of
    // rows `row + ROW_STEP * i` of A (A_ROWS of them) and of B (B_ROWS).
    constexpr int CHUNKS = TC_K / 8, ROW_STEP = TC_THREADS / CHUNKS;
    constexpr int A_ROWS = TC_TILE_M / ROW_STEP, B_ROWS = TILE_N / ROW_STEP;
    // A as [m][k] and B as [n][k]: ldmatrix of either gives mma.sync's fragments.
    __shared__ __align__(16) unsigned short a_ring[TC_STAGES][TC_TILE_M][TC_K + TC_PAD];
    __shared__ __align__(16) unsigned short b_ring[TC_STAGES][TILE_N][TC_K + TC_PAD];
    int m0, end;
    block_pixels<TC_TILE_M>(out_h, out_w, &m0, &end);
    const int reduction = k * k * ci, tiles = reduction / TC_K;
    const int n0 = blockIdx.y * TILE_N;
    const int tid = threadIdx.x;
    const int lane = tid % 32, warp = tid / 32;
    const int warp_m = (warp / WARPS_N) * WARP_M, warp_n = (warp % WARPS_N) * WARP_N;
    float acc[MMA_M][MMA_N][4] = {};
    // Byte offsets in the rings (common.cuh's shared-memory addressing).
    constexpr int ROW_BYTES = (TC_K + TC_PAD) * 2;
    constexpr int A_STAGE_BYTES = TC_TILE_M * ROW_BYTES, B_STAGE_BYTES = TILE_N * ROW_BYTES;

    const int part = tid % CHUNKS, row = tid / CHUNKS;
    const int copy_offset = row * ROW_BYTES + 16 * part;
    int row_b[A_ROWS], row_y[A_ROWS], row_x[A_ROWS];
    bool row_ok[A_ROWS];
    locate_rows<A_ROWS, ROW_STEP>(m0 + row, end, out_h, out_w, row_b, row_y, row_x, row_ok);
    // This thread's chunk of its B rows' weights, at the next tile.
    const unsigned short* b_source[B_ROWS];
    bool b_ok[B_ROWS];
#pragma unroll
    for (int i = 0; i < B_ROWS; ++i) {
        const int n = n0 + row + ROW_STEP * i;
        b_ok[i] = n < co;
        b_source[i] = weights + (b_ok[i] ? (size_t)n * reduction + 8 * part : 0);
    }

    // The next tile to copy: its tap, its first channel and its stage in the ring, advanced
    // tile by tile (no divisions). This thread's chunk of its A rows' input pixels at that tap
    // is found at each new tap: ci / TC_K tiles share it.
    int next_ky = 0, next_kx = 0, next_c = 0, next_tile = 0, write_stage = 0;
    const unsigned short* a_source[A_ROWS];
    const auto copy_next_tile = [&]() {
        if (next_c == 0) {
#pragma unroll
            for (int i = 0; i < A_ROWS; ++i) {
                const size_t pixel = conv_input_pixel(row_b[i], row_y[i], row_x[i], next_ky,
                                                      next_kx, in_h, in_w, stride, pad, upsample);
                a_source[i] = row_ok[i] ? input + pixel * ci + 8 * part : input;
            }
        }
        const int a_to = write_stage * A_STAGE_BYTES + copy_offset;
        const int b_to = write_stage * B_STAGE_BYTES + copy_offset;
#pragma unroll
        for (int i = 0; i < A_ROWS; ++i) {
            cp_async_16(a_ring, a_to + i * ROW_STEP * ROW_BYTES,
                        a_source[i] + (row_ok[i] ? next_c : 0), row_ok[i]);
        }
#pragma unroll
        for (int i = 0; i < B_ROWS; ++i) {
            cp_async_16(b_ring, b_to + i * ROW_STEP * ROW_BYTES, b_source[i], b_ok[i]);
            if (b_ok[i]) b_source[i] += TC_K;
        }
        next_c += TC_K;
        if (next_c == ci) {
            next_c = 0;
            if (++next_kx == k) {
                next_kx = 0;
                ++next_ky;
            }
        }
        ++next_tile;
        write_stage = write_stage == TC_STAGES - 1 ? 0 : write_stage + 1;
    };

    // Every thread commits one group per tile slot, empty past the last tile, so that waiting
    // for all but the newest TC_STAGES - 2 groups always means this tile's has landed.
#pragma unroll
    for (int s = 0; s < TC_STAGES - 1; ++s) {
        if (next_tile < tiles) copy_next_tile();
        cp_async_commit();
    }
    // The lane's row (A) or channel (B) and k offset in ldmatrix's four 8x8 matrices: A's are
    // rows 0-7 and 8-15 at k 0, then at k 8 (a[0..3]); B's are k 0 and 8 of channels 0-7,
    // then of channels 8-15 (b[j][0..1], b[j + 1][0..1]).
    const int a_lane_row = lane % 16, a_lane_k = (lane / 16) * 8;
    const int b_lane_row = lane % 8 + (lane / 16) * 8, b_lane_k = (lane / 8 % 2) * 8;
    const int a_lane_offset = (warp_m + a_lane_row) * ROW_BYTES + 2 * a_lane_k;
    const int b_lane_offset = (warp_n + b_lane_row) * ROW_BYTES + 2 * b_lane_k;
    int read_stage = 0;
    for (int tile = 0; tile < tiles; ++tile) {
        cp_async_wait<TC_STAGES - 2>();
        // After it every thread's copies of this tile are visible, and every warp is done with
        // the stage the copy below overwrites (the last tile's).
        __syncthreads();
        if (next_tile < tiles) copy_next_tile();
        cp_async_commit();
        const int a_stage = read_stage * A_STAGE_BYTES + a_lane_offset;
        const int b_stage = read_stage * B_STAGE_BYTES + b_lane_offset;
#pragma unroll
        for (int t = 0; t < TC_K; t += 16) {
            unsigned int a[MMA_M][4], b[MMA_N][2];
#pragma unroll
            for (int i = 0; i < MMA_M; ++i)
                ldmatrix_x4(a[i], a_ring, a_stage + 16 * i * ROW_BYTES + 2 * t);
#pragma unroll
            for (int j = 0; j < MMA_N; j += 2) {
                unsigned int quad[4];
                ldmatrix_x4(quad, b_ring, b_stage + 8 * j * ROW_BYTES + 2 * t);
                b[j][0] = quad[0];
                b[j][1] = quad[1];
                b[j + 1][0] = quad[2];
                b[j + 1][1] = quad[3];
            }
#pragma unroll
            for (int i = 0; i < MMA_M; ++i)
#pragma unroll
                for (int j = 0; j < MMA_N; ++j) mma_m16n8k16_bf16(acc[i][j], a[i], b[j]);
        }
        read_stage = read_stage == TC_STAGES - 1 ? 0 : read_stage + 1;
    }
    // Accumulator layout: d0,d1 at (group, 2*in_group + {0,1}); d2,d3 eight rows below. This
    // thread's outputs are in columns warp_n + 8 * j + 2 * in_group + p (p = 0, 1), of which
    // it sums its rows for InstanceNorm.
    const int group = lane / 4, in_group = lane % 4;
    double sums[2 * MMA_N] = {}, squares[2 * MMA_N] = {};
    int columns[2 * MMA_N];
#pragma unroll
    for (int c = 0; c < 2 * MMA_N; ++c) columns[c] = warp_n + 8 * (c / 2) + 2 * in_group + c % 2;
#pragma unroll
    for (int i = 0; i < MMA_M; ++i)
#pragma unroll
        for (int j = 0; j < MMA_N; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int m = m0 + warp_m + 16 * i + group + (e >= 2 ? 8 : 0);
                const int c = 2 * j + e % 2, n = n0 + columns[c];
                if (m < end && n < co) {
                    const float y = acc[i][j][e] + bias[n];
                    output[(size_t)m * co + n] = y;
                    sums[c] += y;
                    squares[c] += (double)y * y;
                }
            }
    // The lanes of a group (lane / 4) hold other rows of the same columns; the WARPS_M warps
    // of a column of warps hold the same columns.
    if (partial)
        write_block_statistics<2 * MMA_N, WARPS_M, TILE_N, 4>(sums, squares, columns,
                                                              warp / WARPS_N, n0, co, partial);
}

// The entry points: (input, weights, bias, output, partial, batch, in_h, in_w, ci, out_h, out_w,
// co, k, stride, pad, upsample), where `partial` receives the InstanceNorm partial sums of the
// output (null for none); grid (batch x pixel tiles per image, channel tiles). The fp32 GEMMs
// read f32 activations and [ky][kx][ci][co] f32 weights; the tensor-core GEMMs BF16
// activations and [co][ky][kx][ci] BF16 weights.
#define CONV_GEMM_ENTRY(name, element, threads, body)                                           \
    extern "C" __global__ void __launch_bounds__(threads) name(                                 \
        const element* __restrict__ input, const element* __restrict__ weights,                 \
        const float* __restrict__ bias, float* __restrict__ output, double* __restrict__ partial,\
        int batch, int in_h, int in_w, int ci, int out_h, int out_w, int co, int k, int stride, \
        int pad, int upsample) {                                                                \
        body(input, weights, bias, output, partial, in_h, in_w, ci, out_h, out_w, co, k, stride,\
             pad, upsample);                                                                    \
    }
CONV_GEMM_ENTRY(conv2d_f32, float, 256, conv_gemm_f32<64>)
CONV_GEMM_ENTRY(conv2d_f32_n32, float, 256, conv_gemm_f32<32>)
// 64 channels: warps of 64 x 32 (2 x 2); 32 channels: warps of 32 x 32 (4 x 1).
CONV_GEMM_ENTRY(conv2d_bf16_tc, unsigned short, TC_THREADS, (conv_gemm_bf16_tc<64, 2>))
CONV_GEMM_ENTRY(conv2d_bf16_tc_n32, unsigned short, TC_THREADS, (conv_gemm_bf16_tc<32, 4>))

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

// The first output row and column of a direct kernel's block, of TILE_H x TILE_W output pixels
// (blockIdx.x runs over the tiles of one image, row by row).
template <int TILE_H, int TILE_W>
__device__ __forceinline__ void direct_tile_origin(int out_w, int* y0, int* x0) {
    const int tiles_x = (out_w + TILE_W - 1) / TILE_W;
    *y0 = (blockIdx.x / tiles_x) * TILE_H;
    *x0 = (blockIdx.x % tiles_x) * TILE_W;
}

// The input row (or column) that window position `at` of a direct kernel reads, reflected
// (stride 1, padding `pad`, `len` input rows). A tile may reach past the image (a small one, or
// its right and bottom edges). The last window position any output in the image reads is
// len - 1 + pad: positions past it feed only outputs that are not written, and are clamped
// there, so that one reflection covers every read and none leaves the image.
__device__ __forceinline__ int window_source(int at, int pad, int len) {
    return reflect_index(min(at - pad, len - 1 + pad), len);
}

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
    int y0, x0;
    direct_tile_origin<DIRECT_TILE, TILE_W>(out_w, &y0, &x0);
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
        for (int i = tid; i < WINDOW; i += THREADS) {
            const int c = i % CHUNK, yx = i / CHUNK;
            const int y = window_source(y0 + yx / SPAN_X, pad, in_h);
            const int x = window_source(x0 + yx % SPAN_X, pad, in_w);
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

// The last layer (32 -> 3, 9x9, stride 1) on the tensor cores, for --precision fast: a direct
// convolution whose multiply-adds are mma.sync m16n8k16 with the 3 outputs in an n of 8. A block
// of 4 warps computes 16 x 16 output pixels of one image: it copies the reflected input window
// of those (24 x 24 pixels of 32 BF16 channels, rows padded to 80 bytes so that ldmatrix is
// conflict-free) into shared memory once, with cp.async, and each warp then takes 4 output rows
// (4 MMA tiles of 16 pixels) through the 81 taps: at tap (ky, kx) the A tile of output row r is
// the window row r + ky from column kx, read with ldmatrix straight from the window (no copy per
// tap), and B is the tap's weights, [8][ky][kx][32] in BF16 (outputs 3 to 7 zero), read from
// global memory (41 KB, cached). As a GEMM (input pixels gathered per tap) every input pixel
// would be read 81 times; here once per block, and the fp32 direct kernel's FFMA per
// multiply-add become one HMMA per 2048.
#define TC_DIRECT_TILE 16
#define TC_DIRECT_SPAN (TC_DIRECT_TILE + 8)
#define TC_DIRECT_CHANNELS 32
#define TC_DIRECT_ROW_BYTES (TC_DIRECT_CHANNELS * 2 + 16)
#define TC_DIRECT_THREADS 128
#define TC_DIRECT_ROWS_PER_WARP (TC_DIRECT_TILE / (TC_DIRECT_THREADS / 32))

// The epilogue of both direct kernels on the tensor cores: a warp's accumulators, for its output
// rows y0 + r (r < TC_DIRECT_ROWS_PER_WARP) and N_TILES MMA tiles of 8 outputs, of which the
// first CO exist. d0, d1: pixel `group` of the row, outputs 8 n + 2 in_group and the next; d2,
// d3: pixel group + 8.
template <int N_TILES, int CO>
__device__ __forceinline__ void store_direct_tc(const float (*acc)[N_TILES][4],
                                                const float* __restrict__ bias,
                                                float* __restrict__ output, int b, int y0, int x0,
                                                int out_h, int out_w) {
    const int lane = threadIdx.x % 32, group = lane / 4, in_group = lane % 4;
#pragma unroll
    for (int r = 0; r < TC_DIRECT_ROWS_PER_WARP; ++r) {
        const int y = y0 + r;
#pragma unroll
        for (int n = 0; n < N_TILES; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int x = x0 + group + (e >= 2 ? 8 : 0), o = 8 * n + 2 * in_group + e % 2;
                if (o < CO && y < out_h && x < out_w)
                    output[(((size_t)b * out_h + y) * out_w + x) * CO + o] =
                        acc[r][n][e] + bias[o];
            }
    }
}

__device__ __forceinline__ void conv_direct_to3_tc(
    const unsigned short* __restrict__ input, const unsigned short* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output,
    int in_h, int in_w, int out_h, int out_w, int pad) {
    constexpr int K = 9, TAPS = K * K, CHUNKS = TC_DIRECT_CHANNELS / 8;
    constexpr int ROWS_PER_WARP = TC_DIRECT_ROWS_PER_WARP;
    __shared__ __align__(16) unsigned char window[TC_DIRECT_SPAN * TC_DIRECT_SPAN *
                                                  TC_DIRECT_ROW_BYTES];
    int y0, x0;
    direct_tile_origin<TC_DIRECT_TILE, TC_DIRECT_TILE>(out_w, &y0, &x0);
    const int b = blockIdx.y;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const unsigned short* image = input + (size_t)b * in_h * in_w * TC_DIRECT_CHANNELS;
    // The window, 16 bytes per copy.
    for (int i = tid; i < TC_DIRECT_SPAN * TC_DIRECT_SPAN * CHUNKS; i += TC_DIRECT_THREADS) {
        const int chunk = i % CHUNKS, pixel = i / CHUNKS;
        const int wy = pixel / TC_DIRECT_SPAN, wx = pixel % TC_DIRECT_SPAN;
        const int y = window_source(y0 + wy, pad, in_h), x = window_source(x0 + wx, pad, in_w);
        cp_async_16(window, pixel * TC_DIRECT_ROW_BYTES + 16 * chunk,
                    image + ((size_t)y * in_w + x) * TC_DIRECT_CHANNELS + 8 * chunk, true);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    // ldmatrix's lanes: A rows 0-15 (the tile's 16 pixels of a row) at channels 0 and 8 of the
    // k step; the B fragment of output g = lane / 4 at channels 2 (lane % 4) and 8 more.
    const int group = lane / 4, in_group = lane % 4;
    const int a_lane = (warp * ROWS_PER_WARP * TC_DIRECT_SPAN + lane % 16) * TC_DIRECT_ROW_BYTES +
                       2 * ((lane / 16) * 8);
    const unsigned short* b_lane = weights + (size_t)group * TAPS * TC_DIRECT_CHANNELS +
                                   2 * in_group;
    float acc[ROWS_PER_WARP][1][4] = {};
    for (int ky = 0; ky < K; ++ky) {
#pragma unroll
        for (int kx = 0; kx < K; ++kx) {
            const unsigned short* tap_weights = b_lane + (ky * K + kx) * TC_DIRECT_CHANNELS;
            const int tap_offset = a_lane + (ky * TC_DIRECT_SPAN + kx) * TC_DIRECT_ROW_BYTES;
#pragma unroll
            for (int k = 0; k < TC_DIRECT_CHANNELS; k += 16) {
                const unsigned int bfrag[2] = {bf16_pair(tap_weights + k),
                                               bf16_pair(tap_weights + k + 8)};
#pragma unroll
                for (int r = 0; r < ROWS_PER_WARP; ++r) {
                    unsigned int a[4];
                    ldmatrix_x4(a, window,
                                tap_offset + r * TC_DIRECT_SPAN * TC_DIRECT_ROW_BYTES + 2 * k);
                    mma_m16n8k16_bf16(acc[r][0], a, bfrag);
                }
            }
        }
    }
    // Outputs 3 to 7 are the zero padding.
    store_direct_tc<1, 3>(acc, bias, output, b, y0 + warp * ROWS_PER_WARP, x0, out_h, out_w);
}

// Grid (tiles of 16 x 16 output pixels, batch); conv2d_direct_to3's arguments, with BF16 input
// and weights.
extern "C" __global__ void __launch_bounds__(TC_DIRECT_THREADS) conv2d_direct_to3_tc(
    const unsigned short* __restrict__ input, const unsigned short* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output, int batch, int in_h, int in_w,
    int ci, int out_h, int out_w, int co, int k, int stride, int pad, int upsample) {
    conv_direct_to3_tc(input, weights, bias, output, in_h, in_w, out_h, out_w, pad);
}

// The first layer (3 -> 32, 9x9, stride 1) on the tensor cores, for --precision fast. The input
// is the frame (f32 NHWC of 3 channels, whole numbers, exact in BF16); the block converts the
// reflected window of its 16 x 16 output pixels to BF16 in shared memory, each pixel padded to
// 8 channels (16 bytes, so that ldmatrix can take a pixel as a row). A k-step of 16 is then two
// horizontally adjacent taps of one kernel row: 5 steps per row (taps 0-1, ..., 8 and a zero
// ninth, whose window column the window holds too), 80 k per row of which 27 are real (the
// weights are zero elsewhere): 3 times the multiply-adds of the layer, on units with 64 times
// the fp32 rate per instruction. Each warp takes 4 output rows x 32 outputs (4 MMA tiles
// of n 8); weights are [32][ky][80] in BF16, read from global memory (46 KB, cached).
#define TC_FIRST_STEPS 5
#define TC_FIRST_K (TC_FIRST_STEPS * 16)
#define TC_FIRST_COLUMNS (TC_DIRECT_SPAN + 1)

__device__ __forceinline__ void conv_direct_to32_tc(
    const float* __restrict__ input, const unsigned short* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output,
    int in_h, int in_w, int out_h, int out_w, int pad) {
    constexpr int K = 9, OUTPUTS = 32, N_TILES = OUTPUTS / 8, PIXEL_BYTES = 16;
    constexpr int ROWS_PER_WARP = TC_DIRECT_ROWS_PER_WARP;
    // A pixel is 4 words: channels 0 and 1, channel 2, then zeros.
    __shared__ __align__(16) unsigned int window[TC_DIRECT_SPAN * TC_FIRST_COLUMNS * 4];
    int y0, x0;
    direct_tile_origin<TC_DIRECT_TILE, TC_DIRECT_TILE>(out_w, &y0, &x0);
    const int b = blockIdx.y;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const float* image = input + (size_t)b * in_h * in_w * 3;
    for (int i = tid; i < TC_DIRECT_SPAN * TC_FIRST_COLUMNS; i += TC_DIRECT_THREADS) {
        const int wy = i / TC_FIRST_COLUMNS, wx = i % TC_FIRST_COLUMNS;
        const int y = window_source(y0 + wy, pad, in_h), x = window_source(x0 + wx, pad, in_w);
        const float* pixel = image + ((size_t)y * in_w + x) * 3;
        window[4 * i] = to_bf16(pixel[0]) | (unsigned int)to_bf16(pixel[1]) << 16;
        window[4 * i + 1] = to_bf16(pixel[2]);
        window[4 * i + 2] = 0;
        window[4 * i + 3] = 0;
    }
    __syncthreads();
    // ldmatrix's lanes: A rows 0-15 (the tile's 16 pixels of a row) at the step's first tap
    // (lanes 0-15) and second (16-31); the B fragment of output g = lane / 4 of each n tile at
    // k 2 (lane % 4) and 8 more.
    const int group = lane / 4, in_group = lane % 4;
    const int a_lane =
        ((warp * ROWS_PER_WARP) * TC_FIRST_COLUMNS + lane % 16 + lane / 16) * PIXEL_BYTES;
    const unsigned short* b_lane = weights + (size_t)group * K * TC_FIRST_K + 2 * in_group;
    float acc[ROWS_PER_WARP][N_TILES][4] = {};
#pragma unroll 1
    for (int ky = 0; ky < K; ++ky) {
        const unsigned short* row_weights = b_lane + ky * TC_FIRST_K;
        const int row_offset = a_lane + ky * TC_FIRST_COLUMNS * PIXEL_BYTES;
#pragma unroll
        for (int step = 0; step < TC_FIRST_STEPS; ++step) {
            unsigned int bfrag[N_TILES][2];
#pragma unroll
            for (int n = 0; n < N_TILES; ++n) {
                const unsigned short* w = row_weights + (size_t)n * 8 * K * TC_FIRST_K + 16 * step;
                bfrag[n][0] = bf16_pair(w);
                bfrag[n][1] = bf16_pair(w + 8);
            }
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; ++r) {
                unsigned int a[4];
                ldmatrix_x4(a, window,
                            row_offset + (r * TC_FIRST_COLUMNS + 2 * step) * PIXEL_BYTES);
#pragma unroll
                for (int n = 0; n < N_TILES; ++n) mma_m16n8k16_bf16(acc[r][n], a, bfrag[n]);
            }
        }
    }
    store_direct_tc<N_TILES, OUTPUTS>(acc, bias, output, b, y0 + warp * ROWS_PER_WARP, x0, out_h,
                                      out_w);
}

// Grid (tiles of 16 x 16 output pixels, batch); conv2d_direct_to32's arguments, with BF16
// weights.
extern "C" __global__ void __launch_bounds__(TC_DIRECT_THREADS) conv2d_direct_to32_tc(
    const float* __restrict__ input, const unsigned short* __restrict__ weights,
    const float* __restrict__ bias, float* __restrict__ output, int batch, int in_h, int in_w,
    int ci, int out_h, int out_w, int co, int k, int stride, int pad, int upsample) {
    conv_direct_to32_tc(input, weights, bias, output, in_h, in_w, out_h, out_w, pad);
}
