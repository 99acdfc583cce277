// InstanceNorm over NHWC activations: per (image, channel) mean and biased variance over H x W,
// eps 1e-5, fused with the affine transform and with the ReLU or residual add that follows it.
// Partial sums are written per pixel segment and reduced in a fixed order (no atomics), so
// results are identical from run to run, as the byte-identical mpirun outputs need.
// Needs common.cuh, which the engine prepends.

#define NORM_THREADS 256

// Grid (segments, batch). Thread t accumulates channel t % c over every (256 / c)-th pixel of
// its block's segment in double (above 256 channels, group by group of 256); the block then
// sums its lanes in order and writes
// partial[b][segment][0..c) (sums) and partial[b][segment][c..2c) (sums of squares).
extern "C" __global__ void __launch_bounds__(NORM_THREADS) norm_partial_sums(
    const float* __restrict__ x, double* __restrict__ partial, int hw, int c, int segment_pixels) {
    __shared__ double sums[NORM_THREADS];
    __shared__ double squares[NORM_THREADS];
    const int b = blockIdx.y, segment = blockIdx.x, segments = gridDim.x;
    const int start = segment * segment_pixels;
    const int end = min(start + segment_pixels, hw);
    const float* image = x + (size_t)b * hw * c;
    double* out = partial + ((size_t)b * segments + segment) * 2 * c;
    // Channels in groups of at most NORM_THREADS (one group below 257 channels): in a group of
    // `width` channels, thread t sums channel t % width over every lanes-th pixel.
    for (int first = 0; first < c; first += NORM_THREADS) {
        const int width = min(c - first, NORM_THREADS);
        const int lanes = NORM_THREADS / width;
        const int ch = first + threadIdx.x % width, lane = threadIdx.x / width;
        double s = 0.0, q = 0.0;
        if (lane < lanes) {
            for (int p = start + lane; p < end; p += lanes) {
                const double v = image[(size_t)p * c + ch];
                s += v;
                q += v * v;
            }
        }
        sums[threadIdx.x] = s;
        squares[threadIdx.x] = q;
        __syncthreads();
        if (threadIdx.x < width) {
            double total = 0.0, total_sq = 0.0;
            for (int l = 0; l < lanes; ++l) {
                total += sums[l * width + threadIdx.x];
                total_sq += squares[l * width + threadIdx.x];
            }
            out[first + threadIdx.x] = total;
            out[c + first + threadIdx.x] = total_sq;
        }
        __syncthreads();
    }
}

// A group of FINALIZE_LANES threads per (image, channel), NORM_THREADS / FINALIZE_LANES groups
// per block: lane l sums segments l, l + FINALIZE_LANES, ... in order, then the group's first
// lane sums the lanes in order (a fixed order, so the bytes do not depend on scheduling), and
// turns mean and variance into scale = gamma / sqrt(var + eps) and shift = beta - mean * scale.
// One thread per pair summing a thousand segments alone took longer than the sums themselves.
#define FINALIZE_LANES 32

extern "C" __global__ void __launch_bounds__(NORM_THREADS) norm_finalize(
    const double* __restrict__ partial, const float* __restrict__ gamma,
    const float* __restrict__ beta, float* __restrict__ scale_shift,
    int batch, int segments, int hw, int c) {
    __shared__ double sums[NORM_THREADS];
    __shared__ double squares[NORM_THREADS];
    const int lane = threadIdx.x % FINALIZE_LANES, slot = threadIdx.x - lane;
    const int i = blockIdx.x * (NORM_THREADS / FINALIZE_LANES) + threadIdx.x / FINALIZE_LANES;
    const bool ok = i < batch * c;
    const int b = ok ? i / c : 0, ch = ok ? i % c : 0;
    double s = 0.0, q = 0.0;
    for (int seg = lane; ok && seg < segments; seg += FINALIZE_LANES) {
        const double* p = partial + ((size_t)b * segments + seg) * 2 * c;
        s += p[ch];
        q += p[c + ch];
    }
    sums[threadIdx.x] = s;
    squares[threadIdx.x] = q;
    __syncthreads();
    if (!ok || lane != 0) return;
    for (int l = 1; l < FINALIZE_LANES; ++l) {
        s += sums[slot + l];
        q += squares[slot + l];
    }
    const double mean = s / hw;
    const double variance = fmax(q / hw - mean * mean, 0.0);
    const double scale = gamma[ch] / sqrt(variance + 1e-5);
    scale_shift[2 * i] = (float)scale;
    scale_shift[2 * i + 1] = (float)(beta[ch] - mean * scale);
}

// y = x * scale + shift, then ReLU (mode 1) or + residual (mode 2); written back into x when
// `in_place` is set, and as BF16 rounded to nearest even into bf16_out when it is not null (the
// next convolution's input when that runs on the tensor cores). The engine leaves x as it was
// where only a tensor-core convolution reads y. Grid (quads of the image / NORM_THREADS,
// batch): a thread takes 4 consecutive channels of one pixel (c % 4 == 0) as 16-byte loads and
// stores, with 32-bit index arithmetic within its image (64-bit per element took two thirds of
// this kernel's issue slots on an H100).
extern "C" __global__ void __launch_bounds__(NORM_THREADS) norm_apply(
    float* __restrict__ x, const float* __restrict__ scale_shift,
    const float* __restrict__ residual, unsigned short* __restrict__ bf16_out, int image_quads,
    int c, int mode, int in_place) {
    const int quad = blockIdx.x * NORM_THREADS + threadIdx.x;
    if (quad >= image_quads) return;
    const int b = blockIdx.y;
    const size_t i = ((size_t)b * image_quads + quad) * 4;
    const float4* ss = reinterpret_cast<const float4*>(scale_shift + 2 * (b * c + 4 * quad % c));
    const float4 low = ss[0], high = ss[1];
    const float4 v = *reinterpret_cast<const float4*>(&x[i]);
    float4 y = {fmaf(v.x, low.x, low.y), fmaf(v.y, low.z, low.w), fmaf(v.z, high.x, high.y),
                fmaf(v.w, high.z, high.w)};
    if (mode == 1) y = {fmaxf(y.x, 0.f), fmaxf(y.y, 0.f), fmaxf(y.z, 0.f), fmaxf(y.w, 0.f)};
    if (mode == 2) {
        const float4 r = *reinterpret_cast<const float4*>(&residual[i]);
        y = {y.x + r.x, y.y + r.y, y.z + r.z, y.w + r.w};
    }
    if (in_place) *reinterpret_cast<float4*>(&x[i]) = y;
    if (bf16_out) {
        unsigned int* out = reinterpret_cast<unsigned int*>(&bf16_out[i]);
        out[0] = (unsigned int)to_bf16(y.x) | ((unsigned int)to_bf16(y.y) << 16);
        out[1] = (unsigned int)to_bf16(y.z) | ((unsigned int)to_bf16(y.w) << 16);
    }
}
