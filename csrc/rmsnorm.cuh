// RMSNorm kernels. Framework-free CUDA C++: plain nvcc compiles this header, and nothing here knows torch.
//
// Each kernel class is a struct templated on its key (hidden size, input/weight/output types, formulation, and
// whether a residual is added first).
// The struct's constants are the single source of truth for the launch shape; `run()` launches it.
//
// Shared by every kernel:
//   * 16-byte vector accesses; x is read from memory once and y written once (the warp and CTA kernels hold the
//     row in registers; the wide kernel holds its last steps there and the others in shared memory, or reads a
//     row of two steps twice, the second time from L2);
//   * fp32 accumulation; eps is a run-time value;
//   * a grid-stride loop over rows, on a persistent grid (sized from occupancy and SM count) or a block per
//     row or group of rows, whichever each kernel class measured faster for the rows it is given;
//   * any row stride (in elements) for input and output, last dimension contiguous;
//   * the output may alias the input: every element is read by the thread that writes it, before it writes
//     it, and no other row is touched meanwhile.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace inductor_rmsnorm {

// How the normalised value meets the weight; see DESIGN.md, "Semantics to reproduce exactly".
enum class Formulation {
  kTorch,  // F.rms_norm / nn.RMSNorm: y = out_t(h * w), all in fp32
  kLlama,  // Hugging Face Llama: y = out_t(in_t(h) * w): h is rounded to the input type first
  kGemma,  // Gemma: y = out_t(h * (1 + w)), all in fp32
};

// Weight type of the no-weight form (`elementwise_affine=False`).
struct NoWeight {};

struct Params {
  void* out;
  const void* x;
  const void* weight;  // null for NoWeight
  int64_t rows;
  int64_t x_row_stride;    // elements
  int64_t out_row_stride;  // elements
  float eps;
};

// The fused residual-add variant's extra operands: s = x + residual (rounded to the input type, as eager adds
// two tensors of it) is written to residual_out and is what gets normalised.
struct FusedAddParams : Params {
  const void* residual;
  void* residual_out;
  int64_t residual_row_stride;      // elements
  int64_t residual_out_row_stride;  // elements
};

// Tuning switches (scripts/tune_kernels.py --variants; results in docs/PERFORMANCE.md).
#ifndef INDUCTOR_RMSNORM_PREFETCH
#define INDUCTOR_RMSNORM_PREFETCH 1  // load a block's next row before reducing this one (2x the row's registers)
#endif
// Switches that default to -1 take each kernel class's measured choice; 0 or 1 forces it for every class.
#ifndef INDUCTOR_RMSNORM_STREAMING
#define INDUCTOR_RMSNORM_STREAMING -1  // evict-first cache hints (ld/st.global.cs) on data touched once
#endif
#ifndef INDUCTOR_RMSNORM_PDL
#define INDUCTOR_RMSNORM_PDL 1  // programmatic dependent launch (sm_90): overlap the launch with the previous kernel
#endif
#ifndef INDUCTOR_RMSNORM_PERSISTENT
#define INDUCTOR_RMSNORM_PERSISTENT -1  // warp and wide kernels: grid capped at the blocks the GPU holds at once
#endif
// The warp kernel's plain rows of 12 or 24 vectors (96 or 192 bf16): 1 splits them over the lane groups they fill
// (4 or 8 lanes of 3 vectors, WarpKernel::kUseWholeLanes) in both schedules, 2 in the many-rows schedule only; 0
// keeps the power-of-two groups that cover them (16 or 32 lanes, a quarter idle).
#ifndef INDUCTOR_RMSNORM_WARP_WHOLE_LANES
#define INDUCTOR_RMSNORM_WARP_WHOLE_LANES 2
#endif
// The warp kernel's plain rows take its many-rows schedule (WarpRmsNorm) from this many waves of its blocks, or,
// where that schedule takes whole lane groups, from this many rows an SM (0: at every row count;
// INDUCTOR_RMSNORM_WARP_WHOLE_LANES=0 gives those rows covering groups and the rule by waves).
#ifndef INDUCTOR_RMSNORM_WARP_MANY_ROWS_WAVES
#define INDUCTOR_RMSNORM_WARP_MANY_ROWS_WAVES 2
#endif
#ifndef INDUCTOR_RMSNORM_WARP_WHOLE_LANES_ROWS_PER_SM
#define INDUCTOR_RMSNORM_WARP_WHOLE_LANES_ROWS_PER_SM 56
#endif
// The warp kernel's fused-add rows take a block per group of rows from this many rows an SM (2112 rows on an
// H200), the persistent grid below (0: a block per group of rows at every row count).
#ifndef INDUCTOR_RMSNORM_WARP_FUSED_ROWS_PER_SM
#define INDUCTOR_RMSNORM_WARP_FUSED_ROWS_PER_SM 16
#endif
// The warp kernel's blocks at few rows: 1 launches them with fewer warps (down to one), so that they spread over the
// SMs (WarpKernel::block_warps), 0 always with all 8, -1 by the measured rule (WarpKernel::kSpreadBlocks).
#ifndef INDUCTOR_RMSNORM_WARP_SPREAD
#define INDUCTOR_RMSNORM_WARP_SPREAD -1
#endif
// The CTA kernel's two schedules (CtaRmsNorm): rows that move this many bytes take a block per row once they fill
// the GPU with that many waves of blocks; on a GPU whose SMs each have less than SLOW_MEMORY_SM_GBPS GB/s of peak
// DRAM bandwidth (an H100 SXM 25, an H200 36), rows that move CTA_MANY_ROWS_BYTES_SLOW_MEMORY. A block per row
// gives each thread at least this many 16-byte loads (x, and the residual for the fused add), in fewer threads
// where the row would give it fewer.
#ifndef INDUCTOR_RMSNORM_CTA_MANY_ROWS_BYTES
#define INDUCTOR_RMSNORM_CTA_MANY_ROWS_BYTES 6144
#endif
#ifndef INDUCTOR_RMSNORM_CTA_MANY_ROWS_BYTES_SLOW_MEMORY
#define INDUCTOR_RMSNORM_CTA_MANY_ROWS_BYTES_SLOW_MEMORY 4096
#endif
#ifndef INDUCTOR_RMSNORM_SLOW_MEMORY_SM_GBPS
#define INDUCTOR_RMSNORM_SLOW_MEMORY_SM_GBPS 30
#endif
#ifndef INDUCTOR_RMSNORM_CTA_MANY_ROWS_LOADS
#define INDUCTOR_RMSNORM_CTA_MANY_ROWS_LOADS 2
#endif
#ifndef INDUCTOR_RMSNORM_CTA_MANY_ROWS_WAVES
#define INDUCTOR_RMSNORM_CTA_MANY_ROWS_WAVES 3
#endif
// CTA rows of one vector a thread with no block-per-row schedule (under 6 KiB moved, at most 256 threads) whose
// block leaves a quarter of its lanes idle take the warp kernel, a vector slot a warp of the block, from this many
// rows an SM; 0: never.
#ifndef INDUCTOR_RMSNORM_CTA_WARP_ROWS_PER_SM
#define INDUCTOR_RMSNORM_CTA_WARP_ROWS_PER_SM 8
#endif
// 1: the row loads (x, the residual) of the warp kernel and of the CTA kernel's persistent schedule leave L1 alone
// (ld.global.L1::no_allocate; see the kernels' kRowLoadsSkipL1). Off: on an H100 (run 39, bf16) it gained up to
// 7 % at a few points (fused 5120 x 1024, plain 8192 x 1024) but cost plain 7168 x 1024 19 %, and left the fused
// add's worst point (7168 x 1024) as it was. With it on, the kernel tests' only failures were two 1-token misses
// of the 1 % bar that the default arithmetic shares.
#ifndef INDUCTOR_RMSNORM_ROW_LOADS_SKIP_L1
#define INDUCTOR_RMSNORM_ROW_LOADS_SKIP_L1 0
#endif
// The two-pass kernel's blocks an SM for ptxas's register budget (__launch_bounds__): 0 leaves ptxas its own
// heuristic, 1 or 2 bound it at 128 or 64 registers a thread; -1 takes the measured rule
// (TwoPassRmsNorm::kMinBlocks).
#ifndef INDUCTOR_RMSNORM_WIDE_MIN_BLOCKS
#define INDUCTOR_RMSNORM_WIDE_MIN_BLOCKS -1
#endif
constexpr bool kPrefetch = INDUCTOR_RMSNORM_PREFETCH != 0;
constexpr bool kProgrammaticLaunch = INDUCTOR_RMSNORM_PDL != 0;
constexpr bool kRowLoadsMaySkipL1 = INDUCTOR_RMSNORM_ROW_LOADS_SKIP_L1 != 0;
constexpr bool switch_or(int value, bool measured) { return value < 0 ? measured : value != 0; }
constexpr bool streaming_or(bool measured) { return switch_or(INDUCTOR_RMSNORM_STREAMING, measured); }
constexpr bool persistent_or(bool measured) { return switch_or(INDUCTOR_RMSNORM_PERSISTENT, measured); }

namespace detail {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// N elements of T, moved with 16-byte accesses (N * sizeof(T) is a multiple of 16).
template <typename T, int N>
struct alignas(16) Vec {
  static_assert((N * sizeof(T)) % 16 == 0, "a Vec is a whole number of 16-byte chunks");
  static constexpr int kChunks = N * sizeof(T) / 16;
  using Element = T;
  T v[N];

  __device__ __forceinline__ void load(const T* p) {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) reinterpret_cast<uint4*>(v)[c] = reinterpret_cast<const uint4*>(p)[c];
  }
  __device__ __forceinline__ void store(T* p) const {
#pragma unroll
    for (int c = 0; c < kChunks; ++c) reinterpret_cast<uint4*>(p)[c] = reinterpret_cast<const uint4*>(v)[c];
  }
  // For rows read or written exactly once (x, residual, y, the sum): the weight, reused by every row, uses load.
  // kSkipL1: the line is not allocated in L1 (L2 keeps it as a plain load would).
  template <bool kEvictFirst, bool kSkipL1 = false>
  __device__ __forceinline__ void load_once(const T* p) {
    if constexpr (kEvictFirst) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c) reinterpret_cast<uint4*>(v)[c] = __ldcs(reinterpret_cast<const uint4*>(p) + c);
    } else if constexpr (kSkipL1) {
      // volatile: kept after the kernel's griddepcontrol.wait, as every other volatile asm
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        uint4& chunk = reinterpret_cast<uint4*>(v)[c];
        asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(chunk.x), "=r"(chunk.y), "=r"(chunk.z), "=r"(chunk.w)
                     : "l"(reinterpret_cast<const uint4*>(p) + c));
      }
    } else {
      load(p);
    }
  }
  template <bool kEvictFirst>
  __device__ __forceinline__ void store_once(T* p) const {
    if constexpr (kEvictFirst) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c) __stcs(reinterpret_cast<uint4*>(p) + c, reinterpret_cast<const uint4*>(v)[c]);
    } else {
      store(p);
    }
  }
};

// The weight slice one thread applies; empty for NoWeight.
template <typename TW, int N>
struct WeightVec : Vec<TW, N> {};
template <int N>
struct WeightVec<NoWeight, N> {
  __device__ __forceinline__ void load(const NoWeight*) {}
};

// One output element from the input element, the row's 1/rms and the weight element.
template <Formulation F, typename TIn, typename TW, typename TOut>
struct Normalize {
  template <typename W>
  __device__ __forceinline__ static TOut apply(TIn x, float inv_rms, W w) {
    const float h = to_float(x) * inv_rms;
    if constexpr (std::is_same_v<TW, NoWeight>) {
      return from_float<TOut>(h);
    } else if constexpr (F == Formulation::kTorch) {
      return from_float<TOut>(h * to_float(w));
    } else if constexpr (F == Formulation::kLlama) {
      return from_float<TOut>(to_float(from_float<TIn>(h)) * to_float(w));
    } else {
      return from_float<TOut>(h * (1.0f + to_float(w)));
    }
  }

  // Normalises one vector of x and stores it at y.
  template <bool kEvictFirst, int N, typename WVec>
  __device__ __forceinline__ static void store(TOut* y, const Vec<TIn, N>& x, float inv_rms, const WVec& w) {
    Vec<TOut, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if constexpr (std::is_same_v<TW, NoWeight>) out.v[j] = apply(x.v[j], inv_rms, 0);
      else out.v[j] = apply(x.v[j], inv_rms, w.v[j]);
    }
    out.template store_once<kEvictFirst>(y);
  }
};

// Which input matrix a row load reads.
enum class Operand { kX, kResidual };

// The first element of `row` of that matrix.
template <Operand kOperand, typename T, typename KernelParams>
__device__ __forceinline__ const T* row_pointer(const KernelParams& p, int64_t row) {
  if constexpr (kOperand == Operand::kX) return static_cast<const T*>(p.x) + row * p.x_row_stride;
  else return static_cast<const T*>(p.residual) + row * p.residual_row_stride;
}

// v <- T(v + r) elementwise, computed in fp32 and rounded once, as eager torch adds two tensors of type T.
template <typename T, int N>
__device__ __forceinline__ void add_into(Vec<T, N>& v, const Vec<T, N>& r) {
#pragma unroll
  for (int j = 0; j < N; ++j) v.v[j] = from_float<T>(to_float(v.v[j]) + to_float(r.v[j]));
}

// Row access shared by the warp and CTA kernels: a thread holds N vectors of a row, slot i at element
// Kernel::column(i), present where Kernel::owns(i).
template <typename Kernel, Operand kOperand, typename V, int N, typename KernelParams>
__device__ __forceinline__ void load_row(V (&v)[N], const KernelParams& p, int64_t row) {
  const auto* x = row_pointer<kOperand, typename V::Element>(p, row);
#pragma unroll
  for (int i = 0; i < N; ++i)
    if (Kernel::owns(i))
      v[i].template load_once<Kernel::kEvictFirst, Kernel::kRowLoadsSkipL1>(x + Kernel::column(i));
}

// Loads `row` of x (and of the residual, for the fused-add variant) if the row exists.
template <typename Kernel, typename V, int N, int M, typename KernelParams>
__device__ __forceinline__ void load_operands(V (&v)[N], V (&r)[M], const KernelParams& p, int64_t row) {
  if (row >= p.rows) return;
  load_row<Kernel, Operand::kX>(v, p, row);
  if constexpr (std::is_same_v<KernelParams, FusedAddParams>) load_row<Kernel, Operand::kResidual>(r, p, row);
}

// v <- in_t(v + r), written to the row of residual_out (the fused-add variant) with a plain store: the sum is
// the next layer's residual, read again (an evict-first store also made the largest 16-bit rows spill).
template <typename Kernel, typename V, int N>
__device__ __forceinline__ void add_residual(V (&v)[N], const V (&r)[N], const FusedAddParams& p, int64_t row) {
  auto* s = static_cast<typename V::Element*>(p.residual_out) + row * p.residual_out_row_stride;
#pragma unroll
  for (int i = 0; i < N; ++i) {
    if (!Kernel::owns(i)) continue;
    add_into(v[i], r[i]);
    v[i].store(s + Kernel::column(i));
  }
}

// Adds the squares of a vector's elements to `sum`, in element order, in fp32.
template <typename T, int N>
__device__ __forceinline__ void add_squares(float& sum, const Vec<T, N>& v) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const float f = to_float(v.v[j]);
    sum += f * f;
  }
}

// 1 / a row's root mean square from the sum of its squares, in every kernel, so a row's bits do not depend on
// the kernel. An IEEE division by the hidden size: the sum times a rounded 1/hidden (torch's CUDA mean) was
// 0.05-0.09 µs faster at plain bf16 2880 x 1-128 rows only, and made ptxas spill at fused fp16 24576 (run 28).
template <int kHidden>
__device__ __forceinline__ float inverse_rms(float sum_sq, float eps) {
  return rsqrtf(sum_sq / kHidden + eps);
}

// Sum over aligned groups of `kLanes` lanes; every lane of a group gets the same bits (xor butterfly: each
// step adds the same two values on both partners, and float addition commutes).
template <int kLanes>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The block's total of every thread's sums, through per-warp partial sums in `partial`. Kernels pass one of two
// buffers, alternating by row, so one barrier per row suffices: a warp can only overwrite a buffer after the next
// row's barrier, which every reader of it has passed. A thread passes one sum, or one per vector slot where the
// row's other schedule has a thread per vector: slot i of thread t then sums as that schedule's thread
// t + i * kWarps * 32 would, alone, in its warp, and the warps' partial sums add up in that schedule's order, so
// both schedules give a row the same bits.
template <int kWarps, int kSlots>
__device__ __forceinline__ float block_sum(const float (&sums)[kSlots], float (&partial)[kWarps * kSlots], int lane,
                                           int warp) {
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const float value = group_sum<32>(sums[i]);
    if (lane == 0) partial[warp + i * kWarps] = value;
  }
  __syncthreads();
  float total = 0.f;  // warps past the row's end add +0: the same bits as the sum without them
#pragma unroll
  for (int k = 0; k < kWarps * kSlots; ++k) total += partial[k];
  return total;
}

// Thread-block clusters (sm_90 and newer; the launches take the kernels that use them only there).
// This block's rank in its cluster.
__device__ __forceinline__ int cluster_rank() {
  unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
  return int(r);
}

// Every thread of every block of the cluster arrives; memory written before is visible after.
__device__ __forceinline__ void cluster_barrier() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
  __trap();
#endif
}

// cluster_barrier in two halves, for a barrier whose wait can come later: this block's threads arrive without
// ordering memory (for a barrier that only says the block runs), and wait for every thread of the cluster.
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
  __trap();
#endif
}

// Stores `value` at `local`'s place in the shared memory of block `block` of this cluster.
__device__ __forceinline__ void store_to_cluster_block(float* local, int block, float value) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(local));
  unsigned remote = 0;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(block));
  asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(remote), "f"(value) : "memory");
#else
  __trap();
#endif
}

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
__host__ __device__ constexpr int next_power_of_two(int n) { return n <= 1 ? 1 : 2 * next_power_of_two((n + 1) / 2); }
// The most lanes, a power of two up to 32, that split `vecs` vectors evenly with at most 4 a lane (0: none do).
__host__ __device__ constexpr int whole_lanes(int vecs, int lanes = 32) {
  return lanes == 0 ? 0 : vecs % lanes == 0 && vecs / lanes <= 4 ? lanes : whole_lanes(vecs, lanes / 2);
}

// What a launch needs to know of a device, found on its first launch there: occupancy depends only on the
// kernel and the device. Threads launching at once may both fill it in, with the same values; one that reads
// `programmatic`, `slow_memory` or `shared_memory_fits` before it is set merely launches without programmatic
// dependent launch, or picks the other of two schedules (or the two-pass kernel without shared memory), which
// compute the same bits.
struct DeviceLaunchInfo {
  int max_blocks = 0;         // blocks the GPU holds at once (0: not yet found)
  int sms = 0;                // streaming multiprocessors
  bool programmatic = false;  // programmatic dependent launch (sm_90 and newer)
  bool clusters = false;      // thread-block clusters (sm_90 and newer)
  bool slow_memory = false;   // an SM's share of peak DRAM bandwidth under INDUCTOR_RMSNORM_SLOW_MEMORY_SM_GBPS
  bool shared_memory_fits = false;  // the kernel's dynamic shared memory fits a block of this GPU
};

inline cudaError_t device_launch_info(const void* kernel, int threads, int dynamic_shared_bytes, int device,
                                      DeviceLaunchInfo* info) {
  if (info->max_blocks != 0) return cudaSuccess;
  int sms = 0, per_sm = 0, major = 0, memory_khz = 0, bus_bits = 0;
  cudaError_t err = cudaSuccess;
  // A block takes more than 48 KiB of dynamic shared memory only once the kernel allows it, on each device; a GPU
  // whose blocks hold less refuses (an A100's hold 163 KiB), and the caller launches another kernel.
  bool shared_memory_fits = true;
  if (dynamic_shared_bytes > 0) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic_shared_bytes);
    if (err == cudaErrorInvalidValue) {
      (void)cudaGetLastError();
      shared_memory_fits = false;
      err = cudaSuccess;
    }
  }
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
  if (err == cudaSuccess && shared_memory_fits)
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, dynamic_shared_bytes);
  if (err != cudaSuccess) return err;
  info->shared_memory_fits = shared_memory_fits;
  info->programmatic = major >= 9;
  info->clusters = major >= 9;
  info->sms = sms;
  // Peak DRAM bandwidth: two transfers a memory clock over the bus (H100 SXM 2619 MHz x 5120 bits, 3.35 TB/s).
  // A GPU that reports no clock keeps the default rules (measured on the H200).
  const double sm_gbps = 2.0 * memory_khz * 1e3 * (bus_bits / 8) / 1e9 / (sms > 0 ? sms : 1);
  info->slow_memory = sm_gbps > 0 && sm_gbps < INDUCTOR_RMSNORM_SLOW_MEMORY_SM_GBPS;
  info->max_blocks = sms * (per_sm > 0 ? per_sm : 1);
  return cudaSuccess;
}

// Blocks to launch: persistent, as many as the GPU holds at once, each looping over rows; otherwise one block
// per row group, up to a grid the hardware takes (the loop covers any rows beyond it).
inline int grid_size(const DeviceLaunchInfo& info, bool persistent, int64_t blocks_needed) {
  const int64_t cap = persistent ? info.max_blocks : int64_t(1) << 30;
  return static_cast<int>(blocks_needed < cap ? blocks_needed : cap);
}

constexpr int kMaxDevices = 64;

}  // namespace detail

// How a kernel class with two schedules (FewRows, ManyRows) picks one by the rows of a launch.
enum class RowSplit {
  kNone,                // always FewRows
  kManyRowsByWaves,     // ManyRows once the rows fill the GPU with the class's kManyRowsWaves waves of its blocks
  kBlockPerRowByWaves,  // the same, on a GPU where the class's rows take a block per row (block_per_row_on)
  kManyRowsPerSm,       // ManyRows from the class's kManyRowsPerSm rows an SM
  kClusterFewRows,      // FewRows (a cluster per row) while the clusters' blocks number at most
                        // INDUCTOR_RMSNORM_WIDE_CLUSTER_BLOCKS_PER_SM per SM, where the GPU has clusters and the
                        // row more than one step; ManyRows otherwise
};

// ---------------------------------------------------------------------------------------------------------
// Warp kernel: a group of lanes normalises one row (a whole warp for 256 16-bit elements, 8 lanes for 64, one
// lane for 8), so every lane moves 16 bytes per access even for the smallest rows; several warps per block.
// Groups are a power of two of lanes (they tile the warp); a row of another vector count either fills a narrower
// group whole (kUseWholeLanes: by default rows of 12 or 24 vectors in the many-rows schedule) or leaves a group's
// last lanes idle on its last slot (`owns`).
// Three schedules of the same arithmetic (WarpRmsNorm and CtaRmsNorm pick one by row count):
enum class WarpSchedule {
  kPersistent,     // a persistent grid, each lane group looping over rows with the next row's loads in flight
  kBlockPerRows,   // a block per group of rows, each lane group one row
  kTwoRowsAtOnce,  // a block per two groups of rows, each lane group loading both before it reduces the first
};
// kSlotsApart: a lane's slots sum apart, each over the warp, and add up in slot order, as the CTA kernel's
// warps do for a row of one vector a thread (block_sum), so the row's bits are the CTA kernel's.
template <int kHidden, typename TIn, typename TW, typename TOut, Formulation F, bool kFusedAdd,
          WarpSchedule kSchedule, bool kSlotsApart = false>
struct WarpKernel {
  static constexpr int kVec = 16 / sizeof(TIn);
  static constexpr int kVecsPerRow = kHidden / kVec;
  // A row takes the power-of-two group of lanes that covers it, lanes past its end idle; in the many-rows
  // schedule (INDUCTOR_RMSNORM_WARP_WHOLE_LANES=2), plain rows of 96 and 192 bf16 take the 4 or 8 lanes that hold
  // them whole, 3 vectors a lane. Measured on the H200 (docs/RUNS.md, bf16), whole lanes in the few-rows
  // schedule (=1): faster at 8192-65536 rows (run 16, 192 x 65536 15.20 -> 13.15 µs) but 0.1-0.4 µs slower at
  // 1-1024 rows, where it fell behind Inductor at 7 points, and at 96 x 2048-6144 (run 24, 1.89-2.10 against
  // 1.60-1.96). The fused add lost 25-40 % at 1024 rows with it, and 1 or 2 lanes of 3 vectors (24, 48) were slower
  // at 1024-8192 rows.
  static constexpr int kWholeLanes = detail::whole_lanes(kVecsPerRow);
  static constexpr bool kUseWholeLanes =
      (INDUCTOR_RMSNORM_WARP_WHOLE_LANES == 1 ||
       (INDUCTOR_RMSNORM_WARP_WHOLE_LANES == 2 && kSchedule == WarpSchedule::kTwoRowsAtOnce)) &&
      !kFusedAdd && kWholeLanes >= 4 && kWholeLanes <= 8;
  static constexpr int kCoveringLanes = kVecsPerRow < 32 ? detail::next_power_of_two(kVecsPerRow) : 32;
  static constexpr int kLanesPerRow = kUseWholeLanes ? kWholeLanes : kCoveringLanes;
  static constexpr int kVecsPerLane = detail::ceil_div(kVecsPerRow, kLanesPerRow);
  // A lane of a narrower group sums its slots apart and folds them as the covering group's butterfly would (slot i
  // standing for that group's lane + i * kLanesPerRow, the slots past the row's end adding +0), so a row's bits do
  // not depend on the group it took.
  static constexpr int kFoldedSlots = kCoveringLanes / kLanesPerRow;
  static constexpr bool kRagged = kLanesPerRow * kVecsPerLane != kVecsPerRow;
  static constexpr int kRowsPerWarp = 32 / kLanesPerRow;
  static constexpr int kWarps = 8;  // at most: see block_warps
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kRowsAtOnce = kSchedule == WarpSchedule::kTwoRowsAtOnce ? 2 : 1;
  static constexpr int kRowsPerWarpPass = kRowsPerWarp * kRowsAtOnce;  // a warp's rows in a pass of its loop
  // As the CTA kernel's; run 10 (docs/RUNS.md) found evict-first hints mixed here (plain rows of 128 at
  // 8192 tokens faster, the fused variant slower).
  static constexpr bool kEvictFirst = streaming_or(false);
  // With ROW_LOADS_SKIP_L1, rows skip L1 in every schedule (the CTA kernel's persistent schedule says why): on an
  // H100 (bf16, µs) plain 256 x 8192 3.62 -> 3.50 and 512 x 32768 24.36 -> 23.83 in run 38, 3.63 -> 3.66 and
  // 24.30 -> 24.25 in run 39; fused 64 x 1024 1.61 -> 1.50 (run 39); the others within 3 %.
  static constexpr bool kRowLoadsSkipL1 = kRowLoadsMaySkipL1;
  // (INDUCTOR_RMSNORM_PERSISTENT=0 / 1 turns either one-row schedule into the other, for tuning.)
  static constexpr bool kPersistentGrid =
      kSchedule != WarpSchedule::kTwoRowsAtOnce && persistent_or(kSchedule == WarpSchedule::kPersistent);
  // Whole-lane rows already keep 3 vectors a lane in flight: the next row's loads gained 1-2 % at fp16 192 x
  // 8192-65536 and 6 % at 1024 rows (run 16), and without them the fp16 Gemma instance fits in registers (ptxas
  // spilled 8 bytes with them).
  static constexpr bool kPrefetchRow = kPrefetch && kPersistentGrid && !kUseWholeLanes;
  static constexpr int kResidualVecs = kFusedAdd ? kVecsPerLane : 1;  // 1: a zero-length array is not C++

  static_assert(kHidden % kVec == 0, "hidden size must be a whole number of 16-byte vectors");
  static_assert(32 % kLanesPerRow == 0, "lane groups must tile the warp");
  static_assert(kVecsPerLane <= 8, "the warp kernel keeps at most 8 vectors per lane in registers");

  using Norm = detail::Normalize<F, TIn, TW, TOut>;
  using InVec = detail::Vec<TIn, kVec>;
  using WVec = detail::WeightVec<TW, kVec>;
  using KernelParams = std::conditional_t<kFusedAdd, FusedAddParams, Params>;

  __device__ static void body(const KernelParams& p) {
    const int group = threadIdx.x % 32 / kLanesPerRow;  // which row of the warp's rows
    const int warp = threadIdx.x / 32;

    // Each lane always serves the same columns, so its weight slice is loaded once.
    WVec w[kVecsPerLane];
#pragma unroll
    for (int i = 0; i < kVecsPerLane; ++i)
      if (owns(i)) w[i].load(static_cast<const TW*>(p.weight) + column(i));

    if constexpr (!kPrefetchRow) {
      rows_at_once(p, w, group, warp);
      return;
    }
    // The persistent grid with the next row in flight: this lane's next row is loaded before this one is reduced
    // and stored. The loop bound is uniform over the warp so every lane reaches the shuffles; rows past the end
    // are masked.
    const int64_t row_step = int64_t(gridDim.x) * rows_per_block();
    int64_t first = int64_t(blockIdx.x) * rows_per_block() + warp * kRowsPerWarp;
    InVec v[kVecsPerLane];
    InVec r[kResidualVecs];  // the residual row (fused-add variant only)
    detail::load_operands<WarpKernel>(v, r, p, first + group);
    for (; first < p.rows; first += row_step) {
      const int64_t row = first + group;
      InVec next[kVecsPerLane];
      InVec next_r[kResidualVecs];
      detail::load_operands<WarpKernel>(next, next_r, p, row + row_step);
      normalize_row(p, v, r, w, row);
#pragma unroll
      for (int i = 0; i < kVecsPerLane; ++i) v[i] = next[i];
#pragma unroll
      for (int i = 0; i < kResidualVecs; ++i) r[i] = next_r[i];
    }
  }

  // Without a next row in flight (a block per group of rows or two, whole-lane rows, PREFETCH=0), each lane
  // group loads kRowsAtOnce rows, a block's rows apart, before it reduces the first: the block covers kRowsAtOnce *
  // rows_per_block() consecutive rows (a pass of the loop, which covers rows past the largest grid).
  __device__ static void rows_at_once(const KernelParams& p, const WVec (&w)[kVecsPerLane], int group, int warp) {
    const int64_t block_rows = int64_t(rows_per_block()) * kRowsAtOnce;
    const int64_t row_step = int64_t(gridDim.x) * block_rows;
    for (int64_t first = int64_t(blockIdx.x) * block_rows + warp * kRowsPerWarp; first < p.rows;
         first += row_step) {
      InVec v[kRowsAtOnce][kVecsPerLane];
      InVec r[kRowsAtOnce][kResidualVecs];
#pragma unroll
      for (int k = 0; k < kRowsAtOnce; ++k)
        detail::load_operands<WarpKernel>(v[k], r[k], p, first + group + k * rows_per_block());
#pragma unroll
      for (int k = 0; k < kRowsAtOnce; ++k) normalize_row(p, v[k], r[k], w, first + group + k * rows_per_block());
    }
  }

  // Normalises the lane group's row `row` (masked past the end; every lane reaches the shuffles) from its loaded
  // vectors, and writes it (and, for the fused add, the residual sum).
  __device__ static void normalize_row(const KernelParams& p, InVec (&v)[kVecsPerLane],
                                       const InVec (&r)[kResidualVecs], const WVec (&w)[kVecsPerLane],
                                       int64_t row) {
    if constexpr (kFusedAdd)
      if (row < p.rows) detail::add_residual<WarpKernel>(v, r, p, row);
    const float sum_sq = row_sum_of_squares(v, row < p.rows);
    if (row < p.rows) {
      const float inv_rms = detail::inverse_rms<kHidden>(sum_sq, p.eps);
      TOut* y = static_cast<TOut*>(p.out) + row * p.out_row_stride;
#pragma unroll
      for (int i = 0; i < kVecsPerLane; ++i)
        if (owns(i)) Norm::template store<kEvictFirst>(y + column(i), v[i], inv_rms, w[i]);
    }
  }

  // The row's sum of squares over the lane group (every lane reaches the shuffles; a lane past the rows adds
  // +0), in the order of the group that fixes the row's bits: the covering group's butterfly, which a narrower
  // group reproduces by folding its slots (kFoldedSlots), or the CTA kernel's warps in slot order (kSlotsApart).
  __device__ static float row_sum_of_squares(const InVec (&v)[kVecsPerLane], bool in_rows) {
    if constexpr (kSlotsApart) {
      static_assert(kLanesPerRow == 32, "a slot a warp of the CTA kernel");
      float slot_sums[kVecsPerLane] = {};
#pragma unroll
      for (int i = 0; i < kVecsPerLane; ++i)
        if (in_rows && owns(i)) detail::add_squares(slot_sums[i], v[i]);
      float sum_sq = 0.f;
#pragma unroll
      for (int i = 0; i < kVecsPerLane; ++i) sum_sq += detail::group_sum<32>(slot_sums[i]);
      return sum_sq;
    } else if constexpr (kFoldedSlots > 1) {
      static_assert(kVecsPerLane <= kFoldedSlots && !kRagged, "a narrower group's slots fill it whole");
      float slot_sums[kFoldedSlots] = {};
#pragma unroll
      for (int i = 0; i < kVecsPerLane; ++i)
        if (in_rows) detail::add_squares(slot_sums[i], v[i]);
#pragma unroll
      for (int half = kFoldedSlots / 2; half > 0; half /= 2)
#pragma unroll
        for (int i = 0; i < half; ++i) slot_sums[i] += slot_sums[i + half];
      return detail::group_sum<kLanesPerRow>(slot_sums[0]);
    } else {
      float sum_sq = 0.f;
#pragma unroll
      for (int i = 0; i < kVecsPerLane; ++i)
        if (in_rows && owns(i)) detail::add_squares(sum_sq, v[i]);
      return detail::group_sum<kLanesPerRow>(sum_sq);
    }
  }

  __device__ static int column(int slot) { return (threadIdx.x % kLanesPerRow + slot * kLanesPerRow) * kVec; }
  __device__ static bool owns(int slot) {
    return !kRagged || int(threadIdx.x % kLanesPerRow) + slot * kLanesPerRow < kVecsPerRow;
  }

  // The rows a block serves at once: its warps' (as launched, block_warps) groups.
  __device__ static int rows_per_block() { return kRowsPerWarp * int(blockDim.x / 32); }

  // Where lanes hold two vectors or more of a row, few rows launch in blocks of fewer warps, down to one, so that
  // they spread over the SMs rather than queue in a few. Measured on the H200 (docs/RUNS.md, run 25, plain
  // bf16, µs), blocks of 8 warps against 1: 512 x 16 1.27 against 1.12, x 128 1.41 against 1.14; at 8-64 rows
  // 0.07-0.25 faster in each of three calls. At 1024 rows 1 warp a block was slower (2.12 against 1.66), so blocks
  // shrink only below a block of 8 warps an SM. Rows of one vector a lane gained nothing (the same or up to 0.16
  // slower). A row's arithmetic is the same in any block.
  static constexpr bool kSpreadBlocks = switch_or(INDUCTOR_RMSNORM_WARP_SPREAD, kVecsPerLane >= 2);

  // The warps a block of a launch over `rows` has: all kWarps from a block of them an SM on, fewer below where
  // blocks spread.
  static int block_warps(int64_t rows, int sms) {
    if (!kSpreadBlocks) return kWarps;
    const int64_t warps_needed = (rows + kRowsPerWarpPass - 1) / kRowsPerWarpPass;
    const int64_t warps_per_sm = (warps_needed + sms - 1) / sms;
    return warps_per_sm >= kWarps ? kWarps : warps_per_sm < 1 ? 1 : int(warps_per_sm);
  }
  static int64_t blocks_needed(int64_t rows, int warps = kWarps) {
    const int64_t block_rows = int64_t(kRowsPerWarpPass) * warps;
    return (rows + block_rows - 1) / block_rows;
  }
};

// The warp class: the few-rows schedule, or for plain rows two rows a lane group from 2 waves of those blocks (4
// passes of the persistent grid where both hold as many blocks an SM). Measured on the H200 (docs/RUNS.md,
// run 23, plain, µs at 65536 rows over three runs), the persistent grid against two rows a lane group: bf16 512
// 35.99-36.57 against 34.11-34.41 (87 -> 92-93 % of copy), bf16 256 17.97-18.07 against 17.31-17.57, float32
// 256 35.39-35.67 against 33.81-33.97. From 4 to 8 passes 0-2 % apart (bf16 512 x 32768 17.45-17.53 against
// 17.59-17.76), below that up to 19 % slower (bf16 512 x 8192 4.99 against 5.92).
// Rows of 12 or 24 vectors take the many-rows schedule in the 4 or 8 lanes that hold them whole, 2-4 times the rows
// a block, and from 56 rows an SM (7392 on the H200), far under 2 waves of those blocks. Measured there (run 24,
// µs), against the few-rows schedule in covering groups: bf16 192 x 8192 2.80 against 3.33, x 65536 13.13 against
// 15.50; bf16 96 x 65536 6.71 against 7.70; float32 48 x 32768 3.68 against 4.30. At 6144 rows 3-30 % slower at
// three sizes (bf16 96 2.54 against 1.96); at 8192 11-16 % faster at bf16 192, within 3 % at 96, 4-9 % slower at
// float32 48 (1.86-1.94 against 1.78).
// The fused add's rows take the persistent grid below 16 rows an SM and a block per group of rows from there: at
// 8192-65536 rows that was 2-12 % faster than the persistent grid at 8 of 9 points (run 15, bf16 256 x 65536 33.4
// against 37.4 µs), and two rows a lane group lost (bf16 64 x 32768 5.36 against 5.79). Below, the persistent grid
// was faster at bf16 64 / 128 / 256 (run 26, two calls, µs, against a block per group of rows: bf16 256 x 1
// 0.96 against 1.21, x 128 1.22 against 1.36, x 1024 1.81 against 2.02; 128 x 16 1.14 against 1.32), within 0.1
// at bf16 96 / 192 and float32 32 / 64 / 128, and 0.05-0.14 slower at float32 48 (0.94 against 0.87 at one row);
// from 32 rows an SM it lost (bf16 256 x 4096 3.88 against 3.50).
template <int kHidden, typename TIn, typename TW, typename TOut, Formulation F, bool kFusedAdd = false>
struct WarpRmsNorm {
  using FewRows = WarpKernel<kHidden, TIn, TW, TOut, F, kFusedAdd, WarpSchedule::kPersistent>;
  using ManyRows = WarpKernel<kHidden, TIn, TW, TOut, F, kFusedAdd,
                              kFusedAdd ? WarpSchedule::kBlockPerRows : WarpSchedule::kTwoRowsAtOnce>;
  using KernelParams = typename FewRows::KernelParams;
  static constexpr RowSplit kRowSplit = kFusedAdd || ManyRows::kLanesPerRow < FewRows::kLanesPerRow
                                            ? RowSplit::kManyRowsPerSm
                                            : RowSplit::kManyRowsByWaves;
  static constexpr int kManyRowsWaves = INDUCTOR_RMSNORM_WARP_MANY_ROWS_WAVES;
  static constexpr int kManyRowsPerSm =
      kFusedAdd ? INDUCTOR_RMSNORM_WARP_FUSED_ROWS_PER_SM : INDUCTOR_RMSNORM_WARP_WHOLE_LANES_ROWS_PER_SM;
};

// ---------------------------------------------------------------------------------------------------------
// CTA kernel: one thread block normalises one row; each thread holds up to kVecsPerThread vectors of it. Two
// schedules of the same arithmetic (a row's bits do not depend on how many rows come with it):
//   * few rows (kManyRows false): a persistent grid, each block looping over rows with the next row's loads in
//     flight (prefetch) and the weight slice held in registers;
//   * many rows: a block per row, no prefetch, the weight reloaded (from L1) per row: half the registers or
//     fewer (bf16 4096: 64 -> 32, 8192: 115 -> 48), so an SM holds twice the rows at once. Nsight Compute, bf16
//     x 32768 rows (docs/RUNS.md, run 13): the persistent kernel reached 25-50 % occupancy and 78-80 % of
//     peak DRAM throughput; Liger's Triton kernel 70 % and 84-85 %, Inductor's 90-92 % and 76-89 %.
// Rows longer than 8192 elements (to 48 KiB: dispatch.py) take a block per row at any row count, with 512 threads:
// the persistent schedule's next row and held weight would not fit in registers. Measured on the H200
// (docs/RUNS.md) against the wide kernel's two passes: bf16 12288 at 1024-65536 rows (run 15), plain
// 53-54 % -> 86-98 % of copy, fused 77-89 % -> 88-98 %; bf16 20480 x 8192 rows (run 19), 76 -> 97 %.
template <int kHidden, typename TIn, typename TW, typename TOut, Formulation F, bool kFusedAdd, bool kManyRows>
struct CtaKernel {
  static constexpr int kVec = 16 / sizeof(TIn);
  static constexpr int kVecsPerRow = kHidden / kVec;
#ifndef INDUCTOR_RMSNORM_CTA_MAX_THREADS
#define INDUCTOR_RMSNORM_CTA_MAX_THREADS 256  // measured best on the H200 (docs/RUNS.md); scripts/tune_kernels.py
#endif
  static constexpr bool kLongRow = kHidden > 8192;
  // The fused-add variant holds two rows (x and residual) per thread: twice the threads keep registers level.
  // Fewer threads per row leave registers for more rows in flight per SM; a row needing more than 8 vectors a
  // thread under the cap gets more threads instead. Long rows take 512 threads in both variants (run 15, 12288
  // x 1024-65536 rows: 1-10 % faster than 256 plain, 5-8 % than 768 fused), and 1024 for the fused add with a
  // weight wider than the rows up to 2 vectors a thread (an fp32 weight beside bf16: at 512 threads ptxas held
  // 12288 to 64 registers and spilled; and 1024 threads of 3 vectors spilled at 24576).
  static constexpr bool kWideWeightFused = kFusedAdd && sizeof(TW) > sizeof(TIn);
  static constexpr int kThreadsPerCap =
      !kLongRow ? (kFusedAdd ? 2 : 1) : (kWideWeightFused && kVecsPerRow <= 2048 ? 4 : 2);
  static constexpr int kCapThreads = kThreadsPerCap * INDUCTOR_RMSNORM_CTA_MAX_THREADS;
  // The fused add's few-rows schedule takes one vector a thread for 16-bit rows of 4104-5120 and for those of
  // 5632-7680 whose two vectors a thread would fill whole warps (multiples of 512 elements), beside a block per row
  // that keeps two and sums them apart. Run 31 (docs/RUNS.md, H100, 128-1024 rows): one vector a thread
  // grows smoothly with the row; two read slower at the multiples of 512 than at the ragged next size up (5120 x
  // 512 8.08 us, 5376 x 512 7.09). One vector wins by up to a fifth at 4352-5120 and at those multiples (6144 x
  // 512 9.47 -> 7.62; Inductor 7.67), loses up to 10 % at the ragged sizes from 5376 and at 8192 (1024 threads);
  // float32 rows mostly lost. =0: two vectors a thread always.
#ifndef INDUCTOR_RMSNORM_CTA_FUSED_ONE_VECTOR
#define INDUCTOR_RMSNORM_CTA_FUSED_ONE_VECTOR 1
#endif
  static constexpr bool kFusedOneVector = INDUCTOR_RMSNORM_CTA_FUSED_ONE_VECTOR && kFusedAdd && sizeof(TIn) == 2 &&
                                          kVecsPerRow > 512 && kVecsPerRow < 1024 &&
                                          (kVecsPerRow <= 640 || kVecsPerRow % 64 == 0);
  // The few-rows schedule's cap, which fixes a row's bits in both schedules (kSumSlotsApart).
  static constexpr int kFewRowsMaxThreads = kFusedOneVector ? 1024 : kCapThreads;
  static constexpr int kMaxThreads = kManyRows ? kCapThreads : kFewRowsMaxThreads;
  static constexpr int kMaxVecsPerThread = 8;
  // A block per row has no next row in flight, so each thread loads at least CTA_MANY_ROWS_LOADS vectors of it.
  static constexpr int kMinVecsPerThread =
      kManyRows ? detail::ceil_div(INDUCTOR_RMSNORM_CTA_MANY_ROWS_LOADS, kFusedAdd ? 2 : 1) : 1;
  static constexpr int kVecsPerThread = std::min(
      std::max(detail::ceil_div(kVecsPerRow, kMaxThreads), kMinVecsPerThread), kMaxVecsPerThread);
  // Where that takes fewer threads than the few-row schedule's one vector each, the slots sum apart
  // (block_sum): a row's bits stay the same in both schedules.
  static constexpr bool kSumSlotsApart = kVecsPerThread > detail::ceil_div(kVecsPerRow, kFewRowsMaxThreads);
  // Balanced: the fewest whole warps that cover the row with kVecsPerThread vectors each.
  static constexpr int kThreads = 32 * detail::ceil_div(detail::ceil_div(kVecsPerRow, kVecsPerThread), 32);
  static constexpr int kWarps = kThreads / 32;
  // Measured on the H200 (run 10, docs/RUNS.md): evict-first hints made the fused variant 5-7 % slower
  // at 32768 tokens and gained nothing elsewhere.
  static constexpr bool kEvictFirst = streaming_or(false);
  static constexpr bool kPersistentGrid = !kManyRows && !kLongRow;
  static constexpr bool kPrefetchRow = kPrefetch && kPersistentGrid;
  static constexpr bool kHoldWeight = kPersistentGrid;
  // The persistent schedule holds the weight in registers and reads each row once: with ROW_LOADS_SKIP_L1 its row
  // loads skip L1. On an H100 (run 39, bf16, µs) fused 5120 x 1024 13.20 -> 12.38, plain 8192 x 1024 10.10 -> 9.65,
  // but plain 7168 x 1024 8.76 -> 10.46. The block per row, which reloads the weight each row, keeps plain loads:
  // skipping L1 there (run 38) gained fused 7168 x 1024 (21.34 -> 19.82) but cost 1-2 % at 8192-32768 rows (plain
  // 2048 / 8192 x 32768 90.42 / 357.33 -> 92.00 / 361.17).
  static constexpr bool kRowLoadsSkipL1 = kRowLoadsMaySkipL1 && kPersistentGrid;
  static constexpr int kResidualVecs = kFusedAdd ? kVecsPerThread : 1;  // 1: a zero-length array is not C++
  // Whether the last vector slot of some threads falls past the row end (needs a bounds check).
  static constexpr bool kRagged = kThreads * kVecsPerThread != kVecsPerRow;

  static_assert(kHidden % kVec == 0, "hidden size must be a whole number of 16-byte vectors");
  static_assert(kThreads <= 1024, "one block per row");
  static_assert(!kSumSlotsApart || detail::ceil_div(kVecsPerRow, kFewRowsMaxThreads) == 1,
                "slots sum apart only where the few-row schedule has a thread per vector");
  static_assert(kThreads * kVecsPerThread >= kVecsPerRow, "the threads cover the row");

  using Norm = detail::Normalize<F, TIn, TW, TOut>;
  using InVec = detail::Vec<TIn, kVec>;
  using WVec = detail::WeightVec<TW, kVec>;
  using KernelParams = std::conditional_t<kFusedAdd, FusedAddParams, Params>;

  __device__ static bool owns(int slot) {
    return !kRagged || int(threadIdx.x) + slot * kThreads < kVecsPerRow;
  }
  __device__ static int column(int slot) { return (int(threadIdx.x) + slot * kThreads) * kVec; }

  __device__ static void body(const KernelParams& p) {
    // per-warp partial sums (of each slot, where they sum apart), two buffers alternating by row (block_sum)
    constexpr int kSums = kSumSlotsApart ? kVecsPerThread : 1;
    __shared__ float partial[2][kWarps * kSums];
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;

    WVec w[kVecsPerThread];
    if constexpr (kHoldWeight) {
#pragma unroll
      for (int i = 0; i < kVecsPerThread; ++i)
        if (owns(i)) w[i].load(static_cast<const TW*>(p.weight) + column(i));
    }

    int parity = 0;
    InVec v[kVecsPerThread];
    InVec r[kResidualVecs];  // the residual row (fused-add variant only)
    if constexpr (kPrefetchRow) detail::load_operands<CtaKernel>(v, r, p, blockIdx.x);
    for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
      // With prefetch, the block's next row is loaded now, in flight across this row's barrier and stores.
      InVec next[kVecsPerThread];
      InVec next_r[kResidualVecs];
      if constexpr (kPrefetchRow) detail::load_operands<CtaKernel>(next, next_r, p, row + gridDim.x);
      else detail::load_operands<CtaKernel>(v, r, p, row);
      if constexpr (kFusedAdd) detail::add_residual<CtaKernel>(v, r, p, row);
      float sums[kSums] = {};
#pragma unroll
      for (int i = 0; i < kVecsPerThread; ++i)
        if (owns(i)) detail::add_squares(sums[kSumSlotsApart ? i : 0], v[i]);
      const float total = detail::block_sum<kWarps>(sums, partial[parity], lane, warp);
      parity ^= 1;

      const float inv_rms = detail::inverse_rms<kHidden>(total, p.eps);
      TOut* y = static_cast<TOut*>(p.out) + row * p.out_row_stride;
#pragma unroll
      for (int i = 0; i < kVecsPerThread; ++i) {
        if (!owns(i)) continue;
        if constexpr (!kHoldWeight) w[i].load(static_cast<const TW*>(p.weight) + column(i));
        Norm::template store<kEvictFirst>(y + column(i), v[i], inv_rms, w[i]);
      }
      if constexpr (kPrefetchRow) {
#pragma unroll
        for (int i = 0; i < kVecsPerThread; ++i) v[i] = next[i];
#pragma unroll
        for (int i = 0; i < kResidualVecs; ++i) r[i] = next_r[i];
      }
    }
  }

  static int64_t blocks_needed(int64_t rows) { return rows; }
};

// The CTA kernel's rows split over a cluster of blocks (few rows, sm_90 and newer): at a few rows a row's block
// is all that runs, and one SM moves its bytes (fused bf16 8192 x 1 on an H100, run 32: 1.94 us against a
// same-bytes copy kernel's 1.21). Block b of the cluster runs threads b * kThreads ... of the few-rows schedule's
// block, each with that thread's vector slots, and sends its warps' sums to every block of the cluster, which add
// them in that block's order: a row's bits are the CTA kernel's. Rows over 8192 elements (a block per row at
// any row count) take clusters of the most blocks, up to CTA_CLUSTER_BLOCKS, that split the block's warps evenly,
// while the rows' clusters take at most one block an SM (16 rows in clusters of 8 on 132 SMs). Measured on an
// H100 (docs/RUNS.md, run 36, µs at 1 / 16 rows), clusters of 8 against a block per row: bf16 plain 12288
// 1.89 / 2.28 against 2.17 / 2.59, 24576 2.06 / 2.79 against 2.84 / 3.44; bf16 fused 24576 2.55 / 3.36 against
// 4.23 / 4.87; float32 plain 10240 1.96 / 2.54 against 2.36 / 2.88. Rows of up to 8192 (the persistent
// schedule's) stay one block: in clusters of 2, 4 or 8 they tied or lost up to 0.6 µs (runs 33 and 36; bf16
// plain 8192 x 1 1.59 against 1.86-1.91, 4096 x 1 1.19-1.25 against 1.78).
#ifndef INDUCTOR_RMSNORM_CTA_CLUSTER_BLOCKS
#define INDUCTOR_RMSNORM_CTA_CLUSTER_BLOCKS 8
#endif
namespace detail {
// The most blocks, up to `most`, that split `warps` warps evenly.
__host__ __device__ constexpr int even_split(int warps, int most) {
  return most <= 1 ? 1 : warps % most == 0 ? most : even_split(warps, most - 1);
}
}  // namespace detail

template <int kHidden, typename TIn, typename TW, typename TOut, Formulation F, bool kFusedAdd, int kMostBlocks>
struct CtaClusterKernel {
  using Row = CtaKernel<kHidden, TIn, TW, TOut, F, kFusedAdd, false>;  // the block it splits
  static constexpr int kClusterSize = detail::even_split(Row::kWarps, std::min(kMostBlocks, 8));  // 8: portable
  static constexpr int kThreads = Row::kThreads / kClusterSize;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kVec = Row::kVec;
  static constexpr int kVecsPerThread = Row::kVecsPerThread;
  static constexpr bool kEvictFirst = Row::kEvictFirst;
  static constexpr bool kRowLoadsSkipL1 = Row::kRowLoadsSkipL1;
  static constexpr bool kPersistentGrid = false;
  static_assert(!Row::kSumSlotsApart, "the few-rows block it splits sums a thread's slots together");

  using Norm = typename Row::Norm;
  using InVec = typename Row::InVec;
  using WVec = typename Row::WVec;
  using KernelParams = typename Row::KernelParams;

  // This thread's place in the split block.
  __device__ static int thread() { return detail::cluster_rank() * kThreads + int(threadIdx.x); }
  __device__ static bool owns(int slot) { return !Row::kRagged || thread() + slot * Row::kThreads < Row::kVecsPerRow; }
  __device__ static int column(int slot) { return (thread() + slot * Row::kThreads) * kVec; }

  __device__ static void body(const KernelParams& p) {
    // Distributed shared memory may be written only once every block of the cluster runs: the block says it
    // runs now and waits for the others just before its first remote store, so the wait overlaps the row's loads
    // (run 36, H100, against a whole barrier before them: bf16 24576 x 1 2.51 -> 2.06 µs, fused 2.90 -> 2.55).
    detail::cluster_arrive_relaxed();
    __shared__ float partial[Row::kWarps];  // the split block's per-warp sums (block_sum's `partial`)
    const int64_t row = blockIdx.x / kClusterSize;  // a cluster a row: launch_kernel never caps a cluster's grid
    const int lane = threadIdx.x % 32;
    const int warp = detail::cluster_rank() * kWarps + int(threadIdx.x) / 32;  // in the split block

    WVec w[kVecsPerThread];
#pragma unroll
    for (int i = 0; i < kVecsPerThread; ++i)
      if (owns(i)) w[i].load(static_cast<const TW*>(p.weight) + column(i));
    InVec v[kVecsPerThread];
    InVec r[Row::kResidualVecs];
    detail::load_operands<CtaClusterKernel>(v, r, p, row);
    if constexpr (kFusedAdd) detail::add_residual<CtaClusterKernel>(v, r, p, row);
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < kVecsPerThread; ++i)
      if (owns(i)) detail::add_squares(sum, v[i]);
    sum = detail::group_sum<32>(sum);
    detail::cluster_wait();
    if (lane < kClusterSize) detail::store_to_cluster_block(&partial[warp], lane, sum);  // lane b: block b
    detail::cluster_barrier();
    float total = 0.f;
#pragma unroll
    for (int k = 0; k < Row::kWarps; ++k) total += partial[k];

    const float inv_rms = detail::inverse_rms<kHidden>(total, p.eps);
    TOut* y = static_cast<TOut*>(p.out) + row * p.out_row_stride;
#pragma unroll
    for (int i = 0; i < kVecsPerThread; ++i)
      if (owns(i)) Norm::template store<kEvictFirst>(y + column(i), v[i], inv_rms, w[i]);
  }

  static int64_t blocks_needed(int64_t rows) { return rows * kClusterSize; }
};

// The CTA class: the few-row schedule, or a block per row for many rows. A block per row has no next row in
// flight and pays a block launch per row, so it takes rows that move 6 KiB or more, from 3 waves of its blocks
// on (3168 rows of 256 threads on the H200), in threads that each load 2 or more vectors (x, and the residual
// for the fused add): a plain row of one vector a thread at 256 threads takes half as many threads. Measured on
// the H200 (docs/RUNS.md, bf16), a block per row against the persistent grid: 2 vectors a thread or more,
// at 32768 rows, 93-99 % of copy against 86-95 % (runs 13-14); at 1-1.5 waves the persistent grid wins by up to
// 10 %. One vector a thread in 256 threads lost 2-20 % (plain 2048 x 32768 74.44 against 67.45 µs), in 128
// threads of two it wins (64.84; 1536 x 65536 96.80 against 100.43; float32 1024 x 32768 65.00 against 70.62;
// run 22). 4 KiB rows lose (512 fused, 64-thread blocks: 11-21 %). Long rows (over 8192) take a block per row in
// both. Where an SM has less DRAM bandwidth, a row's share of it lasts longer against the block's launch, and
// a block per row pays from 4 KiB: on an H100 SXM (runs 27-29, five calls) 1-9 % faster at 16384 rows and 7-12 %
// at 32768-65536 (bf16 1024 x 32768 49.97 -> 46.21 µs, 89 -> 96 % of copy), the same at 8192.
// Rows of one vector a thread that move less, in blocks of up to 8 warps that leave a quarter of their lanes idle
// (plain 16-bit 520-576, float32 260-288; with the residual add 16-bit 264-384 and 520-576, float32 260-288), take
// the warp kernel from 8 rows an SM (INDUCTOR_RMSNORM_CTA_WARP_ROWS_PER_SM; 1056 on the H200). It holds the
// block's warps as a lane's vector slots and adds them in the same order, so a row's bits are the CTA kernel's.
// Measured on the H200 (run 24, µs), the CTA kernel against the warp kernel: plain bf16 520 x 2048 2.84-3.07
// against 2.40-2.61, x 65536 39.08-45.75 against 37.80-38.32; float32 260 x 2048 2.77 against 2.02-2.05; fused bf16
// 264 x 65536 43.46 against 37.59, 384 x 2048 3.36-3.53 against 2.84-2.90; slower at a few points (fused bf16 520
// x 2048 3.54 against 3.79, plain 576 x 65536 40.16 against 42.79). At 1024 rows it went from 12 % faster to 13 %
// slower (float32 260 1.97 against 1.74, plain bf16 576 1.95 against 2.21). Rows that fill their warps gained at
// some points and lost up to 38 % at others (plain bf16 1024 x 65536 67.44 against 71.29, float32 512 x 2048 2.92
// against 3.97) and keep the CTA kernel.
template <int kHidden, typename TIn, typename TW, typename TOut, Formulation F, bool kFusedAdd = false>
struct CtaRmsNorm {
  using FewRows = CtaKernel<kHidden, TIn, TW, TOut, F, kFusedAdd, false>;
  static constexpr int kBytesMovedPerRow = kHidden * int((kFusedAdd ? 3 : 1) * sizeof(TIn) + sizeof(TOut));
  // Whether many of these rows take a block per row on a GPU (DeviceLaunchInfo::slow_memory); the schedule is
  // built where either kind of GPU takes it.
  static constexpr bool block_per_row_on(bool slow_memory) {
    return !FewRows::kLongRow &&
           kBytesMovedPerRow >= (slow_memory ? INDUCTOR_RMSNORM_CTA_MANY_ROWS_BYTES_SLOW_MEMORY
                                             : INDUCTOR_RMSNORM_CTA_MANY_ROWS_BYTES);
  }
  static constexpr bool kBlockPerRow = block_per_row_on(false) || block_per_row_on(true);
  // Rows of one vector a thread in 2-8 warps with a quarter of the lanes idle: many of them take the warp kernel
  // (above), in whole warps, the fused add's a block per group of rows as in the warp class. (Rows of one warp or
  // less are the warp class's; tune_kernels.py's class=cta builds them here, one block a row throughout.)
  static constexpr bool kManyRowsOnWarpKernel =
      !FewRows::kLongRow && !kBlockPerRow && FewRows::kVecsPerThread == 1 && FewRows::kVecsPerRow > 32 &&
      FewRows::kWarps <= 8 && 4 * (FewRows::kThreads - FewRows::kVecsPerRow) >= FewRows::kThreads;
  using ManyRows = std::conditional_t<kManyRowsOnWarpKernel,
                                      WarpKernel<kHidden, TIn, TW, TOut, F, kFusedAdd,
                                                 kFusedAdd ? WarpSchedule::kBlockPerRows : WarpSchedule::kPersistent,
                                                 true>,
                                      CtaKernel<kHidden, TIn, TW, TOut, F, kFusedAdd, true>>;
  using KernelParams = typename FewRows::KernelParams;
  static constexpr RowSplit kRowSplit =
      kBlockPerRow                                                       ? RowSplit::kBlockPerRowByWaves
      : kManyRowsOnWarpKernel && INDUCTOR_RMSNORM_CTA_WARP_ROWS_PER_SM > 0 ? RowSplit::kManyRowsPerSm
                                                                         : RowSplit::kNone;
  static constexpr int kManyRowsWaves = INDUCTOR_RMSNORM_CTA_MANY_ROWS_WAVES;
  static constexpr int kManyRowsPerSm = INDUCTOR_RMSNORM_CTA_WARP_ROWS_PER_SM;
  // Rows that leave most SMs idle, each split over a cluster (a cluster of one: never launched).
  using SplitFewRows =
      CtaClusterKernel<kHidden, TIn, TW, TOut, F, kFusedAdd,
                       FewRows::kLongRow ? INDUCTOR_RMSNORM_CTA_CLUSTER_BLOCKS : 1>;
};

// ---------------------------------------------------------------------------------------------------------
// The wide class's rows too long to hold in one block's registers come in steps of kVecsPerStep vectors (512
// threads x 4). Both of its kernels sum a row's squares step by step in one order, so a row's bits do not depend
// on which kernel its batch took: each thread sums its vectors of a step, each warp its threads (xor butterfly),
// the step its warps in order (`step_total`), and the row its steps in order.
namespace detail {
template <int kWarps>
__device__ __forceinline__ float step_total(const float (&warp_sums)[kWarps]) {
  float total = 0.f;
#pragma unroll
  for (int k = 0; k < kWarps; ++k) total += warp_sums[k];
  return total;
}
}  // namespace detail

// The two-pass kernel's steps loaded at once, and whether it keeps the last group of them in registers (-1: its
// measured rule, TwoPassRmsNorm::kKeepLastGroup).
#ifndef INDUCTOR_RMSNORM_WIDE_GROUP
#define INDUCTOR_RMSNORM_WIDE_GROUP 2
#endif
#ifndef INDUCTOR_RMSNORM_WIDE_KEEP_LAST
#define INDUCTOR_RMSNORM_WIDE_KEEP_LAST -1
#endif
// Where the two-pass kernel's second pass finds the steps it does not keep in registers: 0 reads them again from
// L2, 1 finds them in shared memory, where the first pass put them; -1 takes the measured rule
// (TwoPassRmsNorm::kStageInShared).
#ifndef INDUCTOR_RMSNORM_WIDE_STAGE
#define INDUCTOR_RMSNORM_WIDE_STAGE -1
#endif
// Whether the two-pass kernel's staged rows keep loads in flight across steps: the first pass's loads issued
// kGroup steps ahead of their sums (WIDE_PIPELINE; plain rows only), the second pass's weights a step ahead of
// their stores (WIDE_WEIGHT_AHEAD); -1 takes the measured rules (TwoPassRmsNorm::kPipelinedFirstPass, kWeightAhead).
#ifndef INDUCTOR_RMSNORM_WIDE_PIPELINE
#define INDUCTOR_RMSNORM_WIDE_PIPELINE -1
#endif
#ifndef INDUCTOR_RMSNORM_WIDE_WEIGHT_AHEAD
#define INDUCTOR_RMSNORM_WIDE_WEIGHT_AHEAD -1
#endif

// Two-pass kernel (many rows): one thread block normalises one row in two passes over it. The first sums the
// squares (the fused-add variant also writes x + residual), with kGroup (two) steps' loads in flight; the second
// writes y, from the row's last step or two still in registers and from the others (the sum, for fused add) kept
// in shared memory by the first pass, or read again from L2 in rows of two steps, which L2 holds.
// kMayStage false: the others always from L2, for GPUs whose blocks cannot hold them (WideRmsNorm::ManyRowsFromL2).
template <int kHidden, typename TIn, typename TW, typename TOut, Formulation F, bool kFusedAdd = false,
          bool kMayStage = true>
struct TwoPassRmsNorm {
  static constexpr int kVec = 16 / sizeof(TIn);
  static constexpr int kVecsPerRow = kHidden / kVec;
  static constexpr int kThreads = 512;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kUnroll = 4;  // vectors each thread has in flight per step
  static constexpr int kVecsPerStep = kThreads * kUnroll;
  static constexpr int kSteps = detail::ceil_div(kVecsPerRow, kVecsPerStep);
  // Steps the first pass loads at once. Each is still summed on its own, so a row's bits do not depend on the
  // group. Run 18: twice the loads in flight, 65536 bf16 x 8192 rows 633 -> 621 µs, 32768: 288 -> 263.
  static constexpr int kGroup = INDUCTOR_RMSNORM_WIDE_GROUP;
  // The last steps stay in registers, so the second pass reads only the others again and L2 holds less of each
  // row (65536 bf16 x 8192: 621 -> 531 µs, 81 -> 95 % of copy). Not where they would be the whole row: its
  // re-read from L2 is cheap, and half the registers fit two blocks an SM (32768 bf16 x 8192: 289 kept, 263 not).
  static constexpr bool kKeepLastGroup = switch_or(INDUCTOR_RMSNORM_WIDE_KEEP_LAST, kSteps > kGroup);
  // The kept steps are the remainder of the row past whole groups (a whole group where there is none), so every
  // group the first pass loops over is whole: a group's guards for missing steps made ptxas spill (run 18).
  // Without kept steps, a row that does not split into whole groups goes a step at a time.
  static constexpr int kKeptSteps = !kKeepLastGroup ? 0 : kSteps % kGroup ? kSteps % kGroup : kGroup;
  static constexpr int kLoopGroup = kKeepLastGroup || kSteps % kGroup == 0 ? kGroup : 1;
  // The steps the second pass reads again.
  static constexpr int kRereadSteps = kSteps - kKeptSteps;
  // Those steps in shared memory, each thread's vectors at their index in the row (a thread reads back only what
  // it wrote, so no barrier orders them): DRAM sees each byte once, whatever L2 holds. The second pass missed L2
  // for 20-30 % more DRAM traffic than the rows (Nsight Compute, run 20). Measured on an H100 (run 43, µs), in
  // rows of more than two steps: float32 65536 x 8192 1834.5 -> 1447.2 (77 -> 98 % of copy), x 1024 233.1 ->
  // 194.3, fused 3199.2 -> 2883.9; float32 49152 x 32768 5326.8 -> 4304.5; bf16 fused 40960 x 8192 941.2 -> 897.3;
  // float32 24576 and 32768 (two steps staged) within 1 %. Rows of two steps lost up to 4 % (bf16 24584 x 2048
  // 71.60 -> 74.02, fp16 fused 24584 x 32768 2174.6 -> 2241.3): L2 holds them.
  static constexpr bool kStageInShared = kMayStage && switch_or(INDUCTOR_RMSNORM_WIDE_STAGE, kSteps > kGroup);
  // Up to 192 KiB a block: one block an SM for float32 65536, as its registers already allow.
  static constexpr int kDynamicSharedBytes = kStageInShared ? kRereadSteps * kVecsPerStep * 16 : 0;
  static_assert(kDynamicSharedBytes <= 192 * 1024, "the staged steps fit an sm_90 block's shared memory");
  // float32 rows: one block an SM in __launch_bounds__, which lets ptxas use up to 128 registers, and it keeps
  // more loads in flight (run 21, 8192 rows: 32768 582 -> 525 µs, fused 36864 1363 -> 1214); 16-bit rows lost
  // with it (bf16 32768 264 -> 308), so they keep ptxas's own choice.
  static constexpr int kMinBlocks =
      INDUCTOR_RMSNORM_WIDE_MIN_BLOCKS >= 0 ? INDUCTOR_RMSNORM_WIDE_MIN_BLOCKS : sizeof(TIn) == 4 ? 1 : 0;
  // Run 10: evict-first hints on x's last read and on y keep L2 for the rows the second pass reads (65536
  // columns: 54 -> 76 % of copy), and a block per row beats a persistent grid (76 -> 84 %).
  static constexpr bool kEvictFirst = streaming_or(true);
  static constexpr bool kPersistentGrid = persistent_or(false);

  static_assert(kHidden % kVec == 0, "hidden size must be a whole number of 16-byte vectors");

  using Norm = detail::Normalize<F, TIn, TW, TOut>;
  using InVec = detail::Vec<TIn, kVec>;
  using WVec = detail::WeightVec<TW, kVec>;
  using KernelParams = std::conditional_t<kFusedAdd, FusedAddParams, Params>;

  // The vector index of this thread's slot `u` in `step`, and whether it is inside the row: only the last step of
  // a row that is no whole number of steps has slots past its end. The tests cost ragged rows up to 16 registers,
  // and past 64 a block an SM, so as few as possible run: none for a step the caller knows is not the last
  // (kMayBeLast false), nor, in a step known at compile time, for a slot past the end or for any slot where none
  // straddles the end (40960 bf16: 78 -> 58 registers); in rows of one group the thread bound lets the compiler
  // drop the tests of slots wholly inside too (24584 bf16: 66 -> 64). (That bound, or folding those slots, in
  // longer rows made ptxas spill at 65528 float32.)
  __device__ static int index(int step, int u) {
    if constexpr (kSteps <= kGroup) __builtin_assume(threadIdx.x < kThreads);
    return step * kVecsPerStep + u * kThreads + int(threadIdx.x);
  }
  template <bool kMayBeLast = true>
  __device__ static bool inside(int step, int u) {
    const int slot_start = step * kVecsPerStep + u * kThreads;
    return !kMayBeLast || kVecsPerRow % kVecsPerStep == 0 || step < kSteps - 1 ||
           (kVecsPerRow % kThreads == 0 ? slot_start < kVecsPerRow
                                        : slot_start < kVecsPerRow && index(step, u) < kVecsPerRow);
  }
  // Whether the first pass's loop, and the second pass's re-read, may reach the last step: only where none is kept.
  static constexpr bool kLoopMayReachLast = !kKeepLastGroup;

  // Loads this thread's vectors of `step` of `row` into `v` (x, or for the fused add x + residual, which it also
  // stores as the sum) and returns their sum of squares: this kernel's first pass, and all a cluster block reads.
  // Where `staged` is not null, the vectors also go there, at their index in the row. Plain (cached) accesses: a
  // second pass that does not stage reads x or the sum back from L2.
  template <bool kMayBeLast = true>
  __device__ static float load_step(const KernelParams& p, int64_t row, int step, InVec (&v)[kUnroll],
                                    InVec* staged = nullptr) {
    const TIn* x = detail::row_pointer<detail::Operand::kX, TIn>(p, row);
    float step_sq = 0.f;
    if constexpr (kFusedAdd) {
      const TIn* residual = detail::row_pointer<detail::Operand::kResidual, TIn>(p, row);
      TIn* s = static_cast<TIn*>(p.residual_out) + row * p.residual_out_row_stride;
      InVec r[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = index(step, u);
        if (inside<kMayBeLast>(step, u)) {
          v[u].load(x + i * kVec);
          r[u].load(residual + i * kVec);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = index(step, u);
        if (!inside<kMayBeLast>(step, u)) continue;
        detail::add_into(v[u], r[u]);
        v[u].store(s + i * kVec);
        detail::add_squares(step_sq, v[u]);
      }
    } else {
      load_x<kMayBeLast>(x, step, v);
      step_sq = squares<kMayBeLast>(step, v);
    }
    // after the sums: staged between them, ptxas spilled fp16 49152 with the fused add
    if (staged != nullptr) stage<kMayBeLast>(step, v, staged);
    return step_sq;
  }
  template <bool kMayBeLast>
  __device__ static void load_x(const TIn* x, int step, InVec (&v)[kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (inside<kMayBeLast>(step, u)) v[u].load(x + index(step, u) * kVec);
  }
  template <bool kMayBeLast>
  __device__ static float squares(int step, const InVec (&v)[kUnroll]) {
    float step_sq = 0.f;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (inside<kMayBeLast>(step, u)) detail::add_squares(step_sq, v[u]);
    return step_sq;
  }
  template <bool kMayBeLast>
  __device__ static void stage(int step, const InVec (&v)[kUnroll], InVec* staged) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (inside<kMayBeLast>(step, u)) staged[index(step, u)] = v[u];
  }

  // First pass over the kSize steps from `first`: loads them all (into `v`, and into `staged` where it is not
  // null), then sums each step's squares into its warp's slot of `warp_sums`.
  template <int kSize, bool kMayBeLast>
  __device__ static void load_group(const KernelParams& p, int64_t row, int first, InVec (&v)[kSize][kUnroll],
                                    InVec* staged, float (&warp_sums)[kSteps][kWarps], int lane, int warp) {
    float step_sq[kSize];
#pragma unroll
    for (int g = 0; g < kSize; ++g)
      step_sq[g] = load_step<kMayBeLast>(p, row, first + g, v[g], staged);
#pragma unroll
    for (int g = 0; g < kSize; ++g) {
      const float sum = detail::group_sum<32>(step_sq[g]);
      if (lane == 0) warp_sums[first + g][warp] = sum;
    }
  }

  // Second pass over `step`, whose vectors `v` holds: loads the weight, writes y. A weight wider than the input
  // (float32 beside 16-bit x) comes a vector at a time: all at once, its registers made the kept steps spill.
  static constexpr int kWeightsAtOnce = sizeof(WVec) > sizeof(InVec) ? 1 : kUnroll;
  template <bool kMayBeLast>
  __device__ static void store_step(const KernelParams& p, TOut* y, int step, const InVec (&v)[kUnroll],
                                    float inv_rms) {
#pragma unroll
    for (int first = 0; first < kUnroll; first += kWeightsAtOnce) {
      WVec w[kWeightsAtOnce];
#pragma unroll
      for (int u = first; u < first + kWeightsAtOnce; ++u)
        if (inside<kMayBeLast>(step, u))
          w[u - first].load(static_cast<const TW*>(p.weight) + index(step, u) * kVec);
#pragma unroll
      for (int u = first; u < first + kWeightsAtOnce; ++u)
        if (inside<kMayBeLast>(step, u))
          Norm::template store<kEvictFirst>(y + index(step, u) * kVec, v[u], inv_rms, w[u - first]);
    }
  }

  // The first pass of plain staged rows as a sliding window over the whole row, unrolled: each step's loads are
  // issued kGroup steps ahead of its sums, so the loads in flight do not drain to none after every group, as they
  // do in load_group, while every block of the grid waits at once. Same sums, in the same order: same bits. Run 45
  // (H100, with kWeightAhead): float32 36864 x 1024 115.1 -> 106.6 µs (87 -> 94 % of copy), x 8192 835.0 ->
  // 803.1, 49152 x 1024 146.1 -> 141.2; bf16 from 2 % slower (65536 x 128) to 5 % faster (40960 x 128). (The
  // fused add's first pass is not written so.)
  static constexpr bool kPipelinedFirstPass =
      !kFusedAdd && kStageInShared && kKeepLastGroup && switch_or(INDUCTOR_RMSNORM_WIDE_PIPELINE, true);
  using KeptSteps = InVec[kKeepLastGroup ? kKeptSteps : 1][kUnroll];  // 1: a zero-length array is not C++
  __device__ static void pipelined_first_pass(const KernelParams& p, int64_t row, KeptSteps& kept, InVec* staged,
                                              float (&warp_sums)[kSteps][kWarps], int lane, int warp) {
    const TIn* x = detail::row_pointer<detail::Operand::kX, TIn>(p, row);
    InVec v[kSteps][kUnroll];  // at most kGroup + 1 steps live at once
#pragma unroll
    for (int step = 0; step < kSteps + kGroup; ++step) {
      if (step < kSteps) load_x<true>(x, step, v[step]);
      const int done = step - kGroup;
      if (done < 0) continue;
      const float sum = detail::group_sum<32>(squares<true>(done, v[done]));
      if (lane == 0) warp_sums[done][warp] = sum;
      if (done < kRereadSteps) {
        stage<true>(done, v[done], staged);
      } else {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) kept[done - kRereadSteps][u] = v[done][u];
      }
    }
  }

  // The second pass of staged rows, kept steps first (as the default order), with each step's weight loaded while
  // the step before it is stored, not after. Run 45 (H100): float32 65536 x 1024 193.5 -> 190.0 µs alone, bf16
  // 40960 x 128 8.38 -> 7.97. The fused add's rows gained at 128 rows (float32 65536 52.05 -> 48.69) but lost
  // 1 % at 8192 in two runs (2903.9 -> 2934.8, 49152 2172.1 -> 2196.4), and ptxas spilled 24 bytes in bf16 65528's,
  // so they keep the default order. Not for a weight wider than the input (kWeightsAtOnce): its registers made the
  // kept steps spill.
  static constexpr bool kWeightAhead = kStageInShared && kKeepLastGroup && kWeightsAtOnce == kUnroll &&
                                       switch_or(INDUCTOR_RMSNORM_WIDE_WEIGHT_AHEAD, !kFusedAdd);
  __device__ static constexpr int store_order(int k) { return k < kKeptSteps ? kRereadSteps + k : k - kKeptSteps; }
  __device__ static void weight_ahead_second_pass(const KernelParams& p, TOut* y, const KeptSteps& kept,
                                                  const InVec* staged, float inv_rms) {
    WVec w[kSteps][kUnroll];  // two steps live at once
#pragma unroll
    for (int k = 0; k < kSteps + 1; ++k) {
      if (k < kSteps) {
        const int step = store_order(k);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (inside<true>(step, u)) w[k][u].load(static_cast<const TW*>(p.weight) + index(step, u) * kVec);
      }
      if (k == 0) continue;
      const int done = store_order(k - 1);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (!inside<true>(done, u)) continue;
        const InVec v = done >= kRereadSteps ? kept[done - kRereadSteps][u] : staged[index(done, u)];
        Norm::template store<kEvictFirst>(y + index(done, u) * kVec, v, inv_rms, w[k - 1][u]);
      }
    }
  }

  __device__ static void body(const KernelParams& p) {
    // Each step's per-warp sums, two buffers alternating by row, so one barrier per row suffices (as block_sum).
    __shared__ float warp_sums[2][kSteps][kWarps];
    extern __shared__ uint4 dynamic_shared[];  // kDynamicSharedBytes
    InVec* const staged = kStageInShared ? reinterpret_cast<InVec*>(dynamic_shared) : nullptr;
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    int parity = 0;
    for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
      KeptSteps kept;
      if constexpr (kPipelinedFirstPass) {
        pipelined_first_pass(p, row, kept, staged, warp_sums[parity], lane, warp);
      } else {
#pragma unroll 1  // one group's vectors in registers at a time
        for (int first = 0; first < kRereadSteps; first += kLoopGroup) {
          InVec v[kLoopGroup][kUnroll];
          load_group<kLoopGroup, kLoopMayReachLast>(p, row, first, v, staged, warp_sums[parity], lane, warp);
        }
        if constexpr (kKeepLastGroup)
          load_group<kKeptSteps, true>(p, row, kRereadSteps, kept, nullptr, warp_sums[parity], lane, warp);
      }
      __syncthreads();
      float total = 0.f;
#pragma unroll
      for (int step = 0; step < kSteps; ++step) total += detail::step_total(warp_sums[parity][step]);
      parity ^= 1;

      const float inv_rms = detail::inverse_rms<kHidden>(total, p.eps);
      TOut* y = static_cast<TOut*>(p.out) + row * p.out_row_stride;
      if constexpr (kWeightAhead) {
        weight_ahead_second_pass(p, y, kept, staged, inv_rms);
        continue;
      }
      if constexpr (kKeepLastGroup) {
#pragma unroll
        for (int g = 0; g < kKeptSteps; ++g) store_step<true>(p, y, kRereadSteps + g, kept[g], inv_rms);
      }
      // The row the second pass reads: x, or the sum the first pass wrote (fused add).
      const TIn* second = detail::row_pointer<detail::Operand::kX, TIn>(p, row);
      if constexpr (kFusedAdd) second = static_cast<const TIn*>(p.residual_out) + row * p.residual_out_row_stride;
#pragma unroll 1  // from L2 or shared memory, a step at a time
      for (int step = 0; step < kRereadSteps; ++step) {
        InVec v[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (!inside<kLoopMayReachLast>(step, u)) continue;
          if constexpr (kStageInShared) v[u] = staged[index(step, u)];
          else v[u].template load_once<kEvictFirst>(second + index(step, u) * kVec);  // its last read
        }
        store_step<kLoopMayReachLast>(p, y, step, v, inv_rms);
      }
    }
  }

  static int64_t blocks_needed(int64_t rows) { return rows; }
};

// Cluster kernel (few rows, sm_90 and newer): a cluster of one block per step normalises one row, each block
// holding its step in registers, so the row is read once and spread over as many SMs as it has steps. The blocks
// exchange their steps' sums through distributed shared memory and add them in step order, as the two-pass
// kernel does: a row's bits are the same in both. A cluster of one block (rows of one step) is never launched, nor
// compiled.
template <int kHidden, typename TIn, typename TW, typename TOut, Formulation F, bool kFusedAdd = false>
struct ClusterRmsNorm {
  using TwoPass = TwoPassRmsNorm<kHidden, TIn, TW, TOut, F, kFusedAdd>;
  static constexpr int kVec = TwoPass::kVec;
  static constexpr int kThreads = TwoPass::kThreads;
  static constexpr int kWarps = TwoPass::kWarps;
  static constexpr int kUnroll = TwoPass::kUnroll;
  static constexpr int kClusterSize = TwoPass::kSteps;
  // Few rows: L2 has nothing to keep for a second pass, so no cache hint on y unless the switch forces one.
  static constexpr bool kEvictFirst = streaming_or(false);
  static constexpr bool kPersistentGrid = false;

  static_assert(kClusterSize <= 8, "a portable cluster has at most 8 blocks");

  using Norm = detail::Normalize<F, TIn, TW, TOut>;
  using InVec = detail::Vec<TIn, kVec>;
  using WVec = detail::WeightVec<TW, kVec>;
  using KernelParams = typename TwoPass::KernelParams;

  __device__ static void body(const KernelParams& p) {
    static_assert(kClusterSize > 1, "a row of one step takes the two-pass kernel (detail::launch_on_current)");
    // As CtaClusterKernel's: the block says it runs, and waits for the others just before its remote stores
    // (run 36, H100: bf16 32768 x 1 3.32 -> 2.81 µs, 65536 x 16 4.73 -> 4.01).
    detail::cluster_arrive_relaxed();
    __shared__ float warp_sums[kWarps];
    __shared__ float step_sums[kClusterSize];
    const int64_t row = blockIdx.x / kClusterSize;  // a cluster a row: launch_kernel never caps a cluster's grid
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int step = detail::cluster_rank();

    WVec w[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = TwoPass::index(step, u);
      if (TwoPass::inside(step, u)) w[u].load(static_cast<const TW*>(p.weight) + i * kVec);
    }
    InVec v[kUnroll];  // this block's step, held for the output: the same loads and sums as the two-pass kernel's
    const float step_sq = detail::group_sum<32>(TwoPass::load_step(p, row, step, v));
    if (lane == 0) warp_sums[warp] = step_sq;
    __syncthreads();
    detail::cluster_wait();
    // This block's step sum into every block's `step_sums` (thread b: block b), then the cluster waits.
    if (int(threadIdx.x) < kClusterSize)
      detail::store_to_cluster_block(&step_sums[step], int(threadIdx.x), detail::step_total(warp_sums));
    detail::cluster_barrier();
    float total = 0.f;
#pragma unroll
    for (int k = 0; k < kClusterSize; ++k) total += step_sums[k];

    const float inv_rms = detail::inverse_rms<kHidden>(total, p.eps);
    TOut* y = static_cast<TOut*>(p.out) + row * p.out_row_stride;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = TwoPass::index(step, u);
      if (TwoPass::inside(step, u)) Norm::template store<kEvictFirst>(y + i * kVec, v[u], inv_rms, w[u]);
    }
  }

  static int64_t blocks_needed(int64_t rows) { return rows * kClusterSize; }
};

// The wide class: the two-pass kernel, but a cluster per row on sm_90 and newer while the clusters take at most
// this many blocks per SM: there a block per row leaves most SMs idle and walks its row twice. Measured on the
// H200 (docs/RUNS.md, run 17): one block per SM wins (32768 bf16 x 64 rows, 128 blocks: 5.07 -> 4.61 µs),
// two lose (65536 bf16 x 64 rows, 256 blocks: 8.25 -> 10.38 µs).
#ifndef INDUCTOR_RMSNORM_WIDE_CLUSTER_BLOCKS_PER_SM
#define INDUCTOR_RMSNORM_WIDE_CLUSTER_BLOCKS_PER_SM 1
#endif
template <int kHidden, typename TIn, typename TW, typename TOut, Formulation F, bool kFusedAdd = false>
struct WideRmsNorm {
  using FewRows = ClusterRmsNorm<kHidden, TIn, TW, TOut, F, kFusedAdd>;
  using ManyRows = TwoPassRmsNorm<kHidden, TIn, TW, TOut, F, kFusedAdd>;
  // Where a block of the GPU cannot hold the steps ManyRows stages in shared memory (float32 rows of 7-8 steps,
  // 192 KiB, on an A100, whose blocks hold 163 KiB), the two-pass kernel that reads them from L2: the same bits.
  using ManyRowsFromL2 = std::conditional_t<ManyRows::kStageInShared,
                                            TwoPassRmsNorm<kHidden, TIn, TW, TOut, F, kFusedAdd, false>, ManyRows>;
  using KernelParams = typename ManyRows::KernelParams;
  static constexpr RowSplit kRowSplit = RowSplit::kClusterFewRows;
};

// ---------------------------------------------------------------------------------------------------------
// The blocks an SM must hold, for ptxas's register budget: the two-pass kernel's kMinBlocks, 0 (ptxas's own
// choice, as without the bound) for the others.
template <typename Kernel, typename = void>
struct MinBlocks : std::integral_constant<int, 0> {};
template <typename Kernel>
struct MinBlocks<Kernel, std::void_t<decltype(Kernel::kMinBlocks)>> : std::integral_constant<int, Kernel::kMinBlocks> {};

// A block's dynamic shared memory: the two-pass kernel's kDynamicSharedBytes, none for the others.
template <typename Kernel, typename = void>
struct DynamicSharedBytes : std::integral_constant<int, 0> {};
template <typename Kernel>
struct DynamicSharedBytes<Kernel, std::void_t<decltype(Kernel::kDynamicSharedBytes)>>
    : std::integral_constant<int, Kernel::kDynamicSharedBytes> {};

template <typename Kernel>
__global__ void __launch_bounds__(Kernel::kThreads, MinBlocks<Kernel>::value)
    rms_norm_kernel(const __grid_constant__ typename Kernel::KernelParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (kProgrammaticLaunch) {
    // Launched early, beside the previous kernel: wait for it to finish (and its writes to be visible) before
    // touching memory, and let the next kernel launch now; it waits for this one the same way.
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  }
#endif
  Kernel::body(p);
}

namespace detail {

// `Kernel`'s launch facts on `device` (found once per kernel and device; threads finding them at once store the
// same answer). The caller has made `device` current.
template <typename Kernel>
cudaError_t kernel_launch_info(int device, const DeviceLaunchInfo** info) {
  static DeviceLaunchInfo devices[kMaxDevices];
  *info = &devices[device];
  return device_launch_info(reinterpret_cast<const void*>(&rms_norm_kernel<Kernel>), Kernel::kThreads,
                            DynamicSharedBytes<Kernel>::value, device, &devices[device]);
}

// Whether `Kernel` launches blocks of as many warps as its rows need (WarpKernel::block_warps) rather than
// kThreads threads.
template <typename Kernel, typename = void>
struct HasBlockWarps : std::false_type {};
template <typename Kernel>
struct HasBlockWarps<Kernel, std::void_t<decltype(Kernel::block_warps(0, 1))>> : std::true_type {};

// Blocks a cluster of `Kernel` has: ClusterRmsNorm's kClusterSize, 1 for the others.
template <typename Kernel, typename = void>
struct ClusterSize : std::integral_constant<int, 1> {};
template <typename Kernel>
struct ClusterSize<Kernel, std::void_t<decltype(Kernel::kClusterSize)>>
    : std::integral_constant<int, Kernel::kClusterSize> {};

// Launches `Kernel` on the current device, `device`, and `stream`.
template <typename Kernel>
cudaError_t launch_kernel(const typename Kernel::KernelParams& p, cudaStream_t stream, int device) {
  constexpr int kCluster = ClusterSize<Kernel>::value;
  const DeviceLaunchInfo* info = nullptr;
  cudaError_t err = kernel_launch_info<Kernel>(device, &info);
  if (err != cudaSuccess) return err;
  int threads = Kernel::kThreads;
  int64_t blocks_needed = 0;
  if constexpr (HasBlockWarps<Kernel>::value) {
    const int warps = Kernel::block_warps(p.rows, info->sms);
    threads = 32 * warps;
    blocks_needed = Kernel::blocks_needed(p.rows, warps);
  } else {
    blocks_needed = Kernel::blocks_needed(p.rows);
  }
  // Fewer threads a block only where there are fewer blocks than SMs, under the persistent cap.
  const int grid = grid_size(*info, Kernel::kPersistentGrid, blocks_needed);
  if (kCluster > 1 && grid != blocks_needed) return cudaErrorInvalidConfiguration;  // the kernels take a cluster a row
  const bool programmatic = kProgrammaticLaunch && info->programmatic;
  if (programmatic || kCluster > 1) {
    cudaLaunchAttribute attributes[2] = {};
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(grid);
    config.blockDim = dim3(threads);
    config.dynamicSmemBytes = DynamicSharedBytes<Kernel>::value;
    config.stream = stream;
    config.attrs = attributes;
    if (programmatic) {
      attributes[config.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attributes[config.numAttrs++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (kCluster > 1) {  // a grid of whole clusters: blocks_needed is a multiple of kCluster, and so is the cap
      attributes[config.numAttrs].id = cudaLaunchAttributeClusterDimension;
      attributes[config.numAttrs++].val.clusterDim = {unsigned(kCluster), 1, 1};
    }
    return cudaLaunchKernelEx(&config, rms_norm_kernel<Kernel>, p);
  }
  rms_norm_kernel<Kernel><<<grid, threads, DynamicSharedBytes<Kernel>::value, stream>>>(p);
  return cudaGetLastError();
}

// Whether `Kernel` has rows split over a cluster at few rows (CtaRmsNorm::SplitFewRows).
template <typename Kernel, typename = void>
struct HasSplitFewRows : std::false_type {};
template <typename Kernel>
struct HasSplitFewRows<Kernel, std::void_t<typename Kernel::SplitFewRows>> : std::true_type {};

// The wide class's two-pass kernel, or its form without shared memory where the GPU's blocks cannot hold that.
template <typename Kernel>
cudaError_t launch_two_pass(const typename Kernel::KernelParams& p, cudaStream_t stream, int device) {
  using ManyRows = typename Kernel::ManyRows;
  if constexpr (DynamicSharedBytes<ManyRows>::value > 0) {
    const DeviceLaunchInfo* info = nullptr;
    const cudaError_t err = kernel_launch_info<ManyRows>(device, &info);
    if (err != cudaSuccess) return err;
    if (!info->shared_memory_fits) return launch_kernel<typename Kernel::ManyRowsFromL2>(p, stream, device);
  }
  return launch_kernel<ManyRows>(p, stream, device);
}

// Launches the kernel for these rows on the current device: a class with two schedules picks one by its
// kRowSplit (the CTA class first takes few rows split over clusters, where its rows are long enough to gain).
template <typename Kernel>
cudaError_t launch_on_current(const typename Kernel::KernelParams& p, cudaStream_t stream, int device) {
  using FewRows = typename Kernel::FewRows;
  using ManyRows = typename Kernel::ManyRows;
  if constexpr (HasSplitFewRows<Kernel>::value) {
    using Split = typename Kernel::SplitFewRows;
    if constexpr (Split::kClusterSize > 1) {  // while the clusters take at most one block an SM
      const DeviceLaunchInfo* split = nullptr;
      const cudaError_t err = kernel_launch_info<Split>(device, &split);
      if (err != cudaSuccess) return err;
      if (split->clusters && p.rows * Split::kClusterSize <= split->sms) return launch_kernel<Split>(p, stream, device);
    }
  }
  if constexpr (Kernel::kRowSplit == RowSplit::kManyRowsByWaves || Kernel::kRowSplit == RowSplit::kBlockPerRowByWaves) {
    const DeviceLaunchInfo* many_rows = nullptr;
    const cudaError_t err = kernel_launch_info<ManyRows>(device, &many_rows);
    if (err != cudaSuccess) return err;
    bool take_many_rows = ManyRows::blocks_needed(p.rows) >= int64_t(Kernel::kManyRowsWaves) * many_rows->max_blocks;
    if constexpr (Kernel::kRowSplit == RowSplit::kBlockPerRowByWaves)
      take_many_rows = take_many_rows && Kernel::block_per_row_on(many_rows->slow_memory);
    if (take_many_rows) return launch_kernel<ManyRows>(p, stream, device);
    return launch_kernel<FewRows>(p, stream, device);
  } else if constexpr (Kernel::kRowSplit == RowSplit::kManyRowsPerSm) {
    const DeviceLaunchInfo* few_rows = nullptr;
    const cudaError_t err = kernel_launch_info<FewRows>(device, &few_rows);
    if (err != cudaSuccess) return err;
    if (p.rows >= int64_t(Kernel::kManyRowsPerSm) * few_rows->sms)
      return launch_kernel<ManyRows>(p, stream, device);
    return launch_kernel<FewRows>(p, stream, device);
  } else if constexpr (Kernel::kRowSplit == RowSplit::kClusterFewRows) {
    if constexpr (ClusterSize<FewRows>::value == 1) {
      return launch_two_pass<Kernel>(p, stream, device);  // a row of one step: nothing to spread
    } else {
      const DeviceLaunchInfo* few_rows = nullptr;
      const cudaError_t err = kernel_launch_info<FewRows>(device, &few_rows);
      if (err != cudaSuccess) return err;
      const int64_t cluster_blocks = p.rows * ClusterSize<FewRows>::value;
      const int64_t cluster_cap = int64_t(INDUCTOR_RMSNORM_WIDE_CLUSTER_BLOCKS_PER_SM) * few_rows->sms;
      if (few_rows->clusters && cluster_blocks <= cluster_cap)
        return launch_kernel<FewRows>(p, stream, device);
      return launch_two_pass<Kernel>(p, stream, device);
    }
  } else {
    return launch_kernel<FewRows>(p, stream, device);
  }
}

// Whether `Kernel` is a class of two schedules (FewRows, ManyRows) rather than one kernel.
template <typename Kernel, typename = void>
struct HasSchedules : std::false_type {};
template <typename Kernel>
struct HasSchedules<Kernel, std::void_t<typename Kernel::FewRows>> : std::true_type {};

}  // namespace detail

// Launches the kernel for these rows on `device` (made current for the call if it is not) and `stream`.
template <typename Kernel>
cudaError_t launch(const typename Kernel::KernelParams& p, cudaStream_t stream, int device) {
  if (p.rows == 0) return cudaSuccess;
  if (device < 0 || device >= detail::kMaxDevices) return cudaErrorInvalidDevice;
  int previous = -1;
  cudaError_t err = cudaGetDevice(&previous);
  if (err != cudaSuccess) return err;
  if (previous != device && (err = cudaSetDevice(device)) != cudaSuccess) return err;
  if constexpr (detail::HasSchedules<Kernel>::value) err = detail::launch_on_current<Kernel>(p, stream, device);
  else err = detail::launch_kernel<Kernel>(p, stream, device);
  if (previous != device) {
    const cudaError_t restore = cudaSetDevice(previous);
    if (err == cudaSuccess) err = restore;
  }
  return err;
}

}  // namespace inductor_rmsnorm
