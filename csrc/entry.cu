// One JIT instance: the C entry points for one kernel, chosen by macros (nvcc splits a -D value at commas,
// so the template key comes in pieces), e.g.
//   -DKERNEL_CLASS=CtaRmsNorm -DHIDDEN=4096 -DINPUT_T=__nv_bfloat16 -DWEIGHT_T=__nv_bfloat16
//   -DOUTPUT_T=__nv_bfloat16 -DFORMULATION=kLlama -DFUSED_ADD=0
// Python loads the shared library with ctypes; no torch headers, so a build takes seconds.
#include "rmsnorm.cuh"

#if !defined(KERNEL_CLASS) || !defined(HIDDEN) || !defined(INPUT_T) || !defined(WEIGHT_T) || \
    !defined(OUTPUT_T) || !defined(FORMULATION) || !defined(FUSED_ADD)
#error "define KERNEL_CLASS, HIDDEN, INPUT_T, WEIGHT_T, OUTPUT_T, FORMULATION and FUSED_ADD for this instance"
#endif

// The library exports its entry points alone (jit.py builds with -fvisibility=hidden). Left visible, the launch
// facts a kernel keeps (detail::kernel_launch_info's statics) would be process-wide GNU unique symbols, shared by
// every library loaded with the same kernel type: tuning variants of one instance would read one another's
// occupancy and memory class.
#define INDUCTOR_RMSNORM_EXPORT extern "C" __attribute__((visibility("default")))

namespace irn = inductor_rmsnorm;
using NoWeight = irn::NoWeight;
using Kernel = irn::KERNEL_CLASS<HIDDEN, INPUT_T, WEIGHT_T, OUTPUT_T, irn::Formulation::FORMULATION, FUSED_ADD != 0>;

#if FUSED_ADD
// y = norm(x + residual) into out, and x + residual into residual_out.
INDUCTOR_RMSNORM_EXPORT int inductor_rmsnorm_launch_fused_add(void* out, void* residual_out, const void* x,
                                                              const void* residual, const void* weight, int64_t rows,
                                                              int64_t x_row_stride, int64_t residual_row_stride,
                                                              int64_t out_row_stride, int64_t residual_out_row_stride,
                                                              float eps, void* stream, int device) {
  const irn::FusedAddParams params{{out, x, weight, rows, x_row_stride, out_row_stride, eps},
                                   residual, residual_out, residual_row_stride, residual_out_row_stride};
  return static_cast<int>(irn::launch<Kernel>(params, static_cast<cudaStream_t>(stream), device));
}

// The same on contiguous rows: the fused op's hot path (ops.try_run_fused_kernel), with 4 fewer arguments for
// ctypes to convert.
INDUCTOR_RMSNORM_EXPORT int inductor_rmsnorm_launch_fused_add_contiguous(void* out, void* residual_out, const void* x,
                                                                         const void* residual, const void* weight,
                                                                         int64_t rows, float eps, void* stream,
                                                                         int device) {
  const irn::FusedAddParams params{{out, x, weight, rows, HIDDEN, HIDDEN, eps}, residual, residual_out, HIDDEN, HIDDEN};
  return static_cast<int>(irn::launch<Kernel>(params, static_cast<cudaStream_t>(stream), device));
}
#else
INDUCTOR_RMSNORM_EXPORT int inductor_rmsnorm_launch(void* out, const void* x, const void* weight, int64_t rows,
                                                    int64_t x_row_stride, int64_t out_row_stride, float eps,
                                                    void* stream, int device) {
  const irn::Params params{out, x, weight, rows, x_row_stride, out_row_stride, eps};
  return static_cast<int>(irn::launch<Kernel>(params, static_cast<cudaStream_t>(stream), device));
}

// The same on contiguous rows: the eager hot path's call, whose cost is mostly ctypes converting arguments.
INDUCTOR_RMSNORM_EXPORT int inductor_rmsnorm_launch_contiguous(void* out, const void* x, const void* weight,
                                                               int64_t rows, float eps, void* stream, int device) {
  const irn::Params params{out, x, weight, rows, HIDDEN, HIDDEN, eps};
  return static_cast<int>(irn::launch<Kernel>(params, static_cast<cudaStream_t>(stream), device));
}
#endif

INDUCTOR_RMSNORM_EXPORT const char* inductor_rmsnorm_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
