// Frame conversion: 8-bit interleaved RGB frames in, f32 NHWC network input; the network's f32
// output (4*ceil(h/4) x 4*ceil(w/4)) cropped to the frame size, clamped to 0..255 and rounded
// to nearest (half away from zero, as the CPU engine) into 8-bit RGB out.

extern "C" __global__ void rgb8_to_f32(const unsigned char* __restrict__ src,
                                       float* __restrict__ dst, size_t count) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) dst[i] = (float)src[i];
}

// Index in the network output (batch x src_h x src_w x 3) of element i of its crop to h x w.
__device__ __forceinline__ size_t cropped_source(size_t i, int src_h, int src_w, int h, int w) {
    const int c = (int)(i % 3);
    const size_t pixel = i / 3;
    const int x = (int)(pixel % w);
    const int y = (int)((pixel / w) % h);
    const size_t b = pixel / ((size_t)w * h);
    return ((b * src_h + y) * src_w + x) * 3 + c;
}

extern "C" __global__ void f32_to_rgb8(const float* __restrict__ src, unsigned char* __restrict__ dst,
                                       int batch, int src_h, int src_w, int h, int w) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)batch * h * w * 3) return;
    const float v = src[cropped_source(i, src_h, src_w, h, w)];
    dst[i] = (unsigned char)roundf(fminf(fmaxf(v, 0.f), 255.f));
}

// The float output cropped to the frame size (what the golden vectors hold), for --precision
// checks and tests.
extern "C" __global__ void crop_f32(const float* __restrict__ src, float* __restrict__ dst,
                                    int batch, int src_h, int src_w, int h, int w) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)batch * h * w * 3) return;
    dst[i] = src[cropped_source(i, src_h, src_w, h, w)];
}
