// CUDA on the CPU, for running the kernels' own source in tests without a GPU: included before
// common.cuh and the .cu files, with STYLEMILL_CPU_EMULATION defined, in a C++20 build.
// Blocks run one at a time. The threads of a block are real threads, but only one runs at a
// time, in a fixed order: each runs until it reaches a meeting point (__syncthreads, or a warp
// operation of common.cuh, which meets its warp's 32 lanes), then hands over to the next
// thread that may run. So a run is deterministic, and a missing barrier shows: every thread
// before the last reads what later threads have not yet written. `__shared__` variables are
// statics, shared by the block's threads and left as the previous block wrote them (as
// uninitialised shared memory may be).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <ucontext.h>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(threads)
#define __align__(bytes) __attribute__((aligned(bytes)))
#define __shared__ static

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

// CUDA's built-in 16-byte vector, as the kernels' vector loads use it.
struct alignas(16) float4 {
    float x, y, z, w;
};

// The running fiber's: set when a thread starts and restored at every switch.
inline dim3 threadIdx;
inline dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

using std::fmax;
using std::fmaf;
using std::fmaxf;
using std::fminf;
using std::min;
using std::roundf;
using std::sqrt;

inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

namespace emulation {

inline float bits_to_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// Makes thread `t` (its rank in the block) the one `threadIdx` describes.
inline void enter_thread(int t) {
    threadIdx = {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
}

// Runs a block's threads one at a time as fibers (ucontext) on the launching thread, handing
// over at meeting points in a fixed round-robin order.
class Scheduler {
  public:
    explicit Scheduler(int count)
        : contexts_(count), stacks_(count), waiting_(count, false), done_(count, false) {}

    // A group of threads that meet: all must arrive before any goes on.
    struct Group {
        std::vector<int> members;
        std::vector<int> arrived;
    };

    // Runs `body(t)` for every thread t until all have finished. The stacks are allocated on
    // the first run and reused by the next blocks, uninitialised: zeroing 256 stacks for every
    // block would cost more than the block's work.
    template <typename Body>
    void run(Body& body) {
        body_ = &body;
        const int count = (int)contexts_.size();
        std::fill(waiting_.begin(), waiting_.end(), false);
        std::fill(done_.begin(), done_.end(), false);
        for (int t = 0; t < count; ++t) {
            if (!stacks_[t]) stacks_[t].reset(new char[kStackBytes]);
            getcontext(&contexts_[t]);
            contexts_[t].uc_stack.ss_sp = stacks_[t].get();
            contexts_[t].uc_stack.ss_size = kStackBytes;
            contexts_[t].uc_link = &main_;
            makecontext(&contexts_[t], (void (*)())&Scheduler::trampoline<Body>, 0);
        }
        current_ = this;
        running_ = 0;
        enter_thread(0);
        swapcontext(&main_, &contexts_[0]);
        current_ = nullptr;
    }

    int running() const { return running_; }

    void meet(Group& group) {
        const int self = running_;
        group.arrived.push_back(self);
        if (group.arrived.size() == group.members.size()) {
            for (int member : group.arrived) waiting_[member] = false;
            group.arrived.clear();
        } else {
            waiting_[self] = true;
        }
        switch_from(self);
    }

  private:
    static constexpr size_t kStackBytes = 256 * 1024;
    static inline Scheduler* current_ = nullptr;
    static inline void* body_ = nullptr;

    template <typename Body>
    static void trampoline() {
        Scheduler& self = *current_;
        (*static_cast<Body*>(body_))(self.running_);
        self.done_[self.running_] = true;
        self.switch_from(self.running_);
    }

    // Passes the turn to the next thread after `self` (itself last) that can run, or back to
    // the launcher when every thread has finished.
    void switch_from(int self) {
        const int count = (int)done_.size();
        for (int step = 1; step <= count; ++step) {
            const int next = (self + step) % count;
            if (!done_[next] && !waiting_[next]) {
                if (next == self) return;
                running_ = next;
                enter_thread(next);
                swapcontext(&contexts_[self], &contexts_[next]);
                return;
            }
        }
        if (std::find(done_.begin(), done_.end(), false) != done_.end()) {
            std::fprintf(stderr,
                         "emulation: every thread of the block waits: a barrier not all "
                         "threads reach\n");
            std::abort();
        }
        swapcontext(&contexts_[self], &main_);
    }

    ucontext_t main_;
    std::vector<ucontext_t> contexts_;
    std::vector<std::unique_ptr<char[]>> stacks_;
    std::vector<bool> waiting_;
    std::vector<bool> done_;
    int running_ = 0;
};

// What the lanes of one warp publish to each other.
struct Warp {
    unsigned int a[32][4];
    unsigned int b[32][2];
    const unsigned char* rows[32];
    double values[32];
    Scheduler::Group lanes;
};

// One thread's asynchronous copies (cp.async) of 16 bytes: issued, grouped at each commit, and
// performed only when the thread waits for their group. A copy from no source writes zeros.
struct AsyncCopies {
    struct Copy {
        void* shared;
        const void* global;
    };
    std::vector<Copy> open;
    std::vector<std::vector<Copy>> committed;

    void commit() {
        committed.push_back(std::move(open));
        open.clear();
    }

    void land_all_but(int pending) {
        while ((int)committed.size() > pending) {
            for (const Copy& copy : committed.front()) {
                if (copy.global)
                    std::memcpy(copy.shared, copy.global, 16);
                else
                    std::memset(copy.shared, 0, 16);
            }
            committed.erase(committed.begin());
        }
    }
};

struct Block {
    Scheduler scheduler;
    Scheduler::Group threads;
    std::vector<std::unique_ptr<Warp>> warps;
    std::vector<AsyncCopies> copies;
    explicit Block(int count) : scheduler(count), copies(count) {
        for (int t = 0; t < count; ++t) threads.members.push_back(t);
        for (int w = 0; w < (count + 31) / 32; ++w) {
            warps.push_back(std::make_unique<Warp>());
            for (int t = 32 * w; t < std::min(count, 32 * w + 32); ++t)
                warps.back()->lanes.members.push_back(t);
        }
    }
};

inline Block* block = nullptr;

inline int lane() { return block->scheduler.running() % 32; }
inline Warp& this_warp() { return *block->warps[block->scheduler.running() / 32]; }
inline AsyncCopies& this_thread_copies() { return block->copies[block->scheduler.running()]; }

// Meets the other lanes of this thread's warp.
inline void meet_warp() { block->scheduler.meet(this_warp().lanes); }

// Runs `kernel(args...)` over `grid` blocks of `threads` threads, block after block. One
// launch at a time: launches share the grid, the block and the `__shared__` statics.
// One lock for every kernel (a static inside the template would be one per kernel).
inline std::mutex one_launch;

template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 threads, Kernel kernel, Args... args) {
    std::lock_guard<std::mutex> lock(one_launch);
    gridDim = grid;
    blockDim = threads;
    const int count = (int)(threads.x * threads.y * threads.z);
    Block current(count);
    block = &current;
    auto body = [&](int) { kernel(args...); };
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx) {
                blockIdx = {bx, by, bz};
                // Copies a block never waited for die with it.
                for (AsyncCopies& copies : current.copies) copies = AsyncCopies{};
                current.scheduler.run(body);
            }
    block = nullptr;
}

}  // namespace emulation

inline void __syncthreads() { emulation::block->scheduler.meet(emulation::block->threads); }
