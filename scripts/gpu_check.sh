#!/usr/bin/env bash
# The GPU-side checks and benchmarks, for a machine with a CUDA GPU (the device tool's H200), by group:
#   tests       the test suite (CUDA tests included; ~4.5 min on the H200 with a cold JIT cache, plus the 60 s
#               threaded stress test; 272 s in 8 workers)
#   sanitizers  compute-sanitizer memcheck over scripts/sanitize_sweep.py, racecheck over a few CTA and wide sizes
#               and over the two-pass kernel (scripts/sanitize_two_pass.py)
#   benchmarks  overheads (JIT, eager call), the block with/without the pass, the kernel grid
#   models      Hugging Face models end to end, pass on/off and eager patch (scripts/bench_models.py)
#   tuning      the kernels' tuning switches against the defaults, plain and fused residual add
#   decode      compiled decode's host cost: the op's call times, Llama 3 and Qwen3 decode with and without the
#               pass (default and reduce-overhead), and Qwen3 at batch 1 under the profiler with Chrome traces
#   classes     the warp kernel (a row a warp, no block barrier) against the CTA kernel that dispatch picks for
#               rows of 512-2048, where ours trail Inductor or the copy at many rows (docs/RUNS.md, run 13)
#   waves       the CTA kernel's block-per-row schedule from 1, 2 or 3 waves of its blocks (the default), at
#               1024-4096 rows, where the persistent schedule trails Inductor at 1024 rows (run 14)
#   lanes       the warp kernel's plain rows of 96 and 192 bf16 in the lane groups they fill (WARP_WHOLE_LANES=1)
#               against the default power-of-two groups with idle lanes, at 1-65536 rows (run 16)
#   warprows    the warp kernel's plain rows of 96 / 192 bf16 and 48 / 96 float32 at 1024-65536 rows: the many-rows
#               schedule in the lane groups they fill from 56 rows an SM (the default) against covering groups
#               (WARP_WHOLE_LANES=0), whole lanes in both schedules (=1) and at every row count (ROWS_PER_SM=0)
#   ctawarp     CTA rows of one vector a thread in blocks a quarter idle (plain 16-bit 520-576, float32 260-288;
#               16-bit 264-384 and 520-576 with the residual add) on the warp kernel from 8 rows an SM (the
#               default) against the CTA kernel (CTA_WARP_ROWS_PER_SM=0) and the warp kernel from 1 row an SM
#   fusedfew    the residual add + norm's warp-kernel rows (16-bit 64-256, float32 32-128) at 1-2048 rows against the
#               CTA kernel (one block a row), which read 0.11-0.31 µs faster at 1-128 rows of 256 bf16 in run 25
#   rows4k      a block per row for CTA rows moving 4-6 KiB: the rule of GPUs of faster memory (6 KiB and up,
#               SLOW_MEMORY_SM_GBPS=0) against that of slower memory (4 KiB, =1000) on this GPU, whichever its
#               default is (4 KiB on an H100 SXM, 6 KiB on an H200): plain 16-bit 1024-1528, float32 512-640, fused
#               16-bit 512-640, fused float32 320 at 8192-65536 rows; 4 KiB was 7-12 % faster at 32768-65536 rows
#               on an H100 in runs 27-28, slower for fused 16-bit 512 on the H200 in run 14
#   retime      switches that change a kernel's occupancy but not its C++ type, which before 772de15 were timed on
#               the launch facts (persistent grid, split by waves) of the variant launched first (run 29): the CTA
#               thread cap (CTA_MAX_THREADS=512 against 256: one vector a thread for the fused add's 16-bit rows
#               of 4104-8192, two for plain ones; in run 30 fused 5120 x 512 a fifth faster on an H100 and an
#               H200, 6144 x 2048 5 % slower on the H200) at bf16 4608-8192 and 128-32768 rows, the next row in
#               flight (PREFETCH=0) on the warp and CTA kernels' few-rows schedules, and the block per row's loads
#               a thread (CTA_MANY_ROWS_LOADS 1 / 4 against 2; 4 compiles for plain rows of 256 vectors or fewer)
#               at bf16 1536-4096; plain and fused
#   fusedvec    the fused add's few CTA rows of 16-bit 4104-5120, and 5632-7680 in multiples of 512, in one
#               vector a thread (the default; the block per row keeps two, summed apart) against two
#               (CTA_FUSED_ONE_VECTOR=0), bf16 4608-8192 (the ragged 5376 and 6400 among them: two a thread) and
#               float32 2560-4096 (two in both) at 128-32768 rows, then the batch-invariance and kernel tests at
#               those sizes under the switch
#   ctacluster  few CTA rows split over a cluster of up to 8 blocks (the default for rows over 8192 elements)
#               against a block a row (CTA_CLUSTER_BLOCKS=0): bf16 9216-24576 (clusters of 6, 8, 7 and 8 blocks)
#               and float32 10240-12288, plain and fused, at 1-16 rows, then the CUDA sweep and batch invariance at
#               the sizes that take clusters
#   registers   the two-pass kernel's register bound (WIDE_MIN_BLOCKS: 1 up to 128 registers for float32 rows, the
#               default; 0 ptxas's own choice; 2 at most 64), float32 and bf16, plain and fused, 1024 and 8192 rows
#   cluster     the wide class's cluster per row (the default while its blocks fit one per SM,
#               WIDE_CLUSTER_BLOCKS_PER_SM=1) against the two-pass kernel alone (=0) and a cluster at every row
#               count, bf16 and fp32, then the grid's wide rows
#   stage       the two-pass kernel's steps it does not keep in registers, staged in shared memory for its second
#               pass (the default in rows of more than two steps): the wide sizes' CUDA tests and the two-pass
#               kernel under memcheck, then against read again from L2 (WIDE_STAGE=0) at float32 16384-65536 and
#               bf16 32768-65536 x 128-8192 rows, plain and fused, and racecheck over the two-pass kernel
#   inflight    the two-pass kernel's staged rows with loads in flight across steps (the defaults: the plain first
#               pass a sliding window, WIDE_PIPELINE; plain rows' weights a step ahead of their stores,
#               WIDE_WEIGHT_AHEAD) against the first pass in groups and the weights after their steps: the wide
#               sizes' CUDA tests and memcheck under the other settings, then float32 20480-65536 and bf16
#               40960-65536 at 128-8192 rows, and the fused add's weights ahead (WIDE_WEIGHT_AHEAD=1, not its
#               default: 1 % slower at 8192 rows in run 45)
#   ncu         Nsight Compute's counters for one call of a copy, ours, Inductor's and Liger's kernels at the large
#               points where ours trail (scripts/profile_kernels.py), plain and fused: two CSV files
#   grid        bench_kernels.py over every real hidden size (--grid all-sizes, 114 points, ~5 min) for one
#               dtype and variant: GRID_DTYPE=bfloat16|float16|float32, GRID_VARIANT=plain|fused (HF eager left
#               out: far behind everywhere, and the slowest to time at large sizes)
# Logs and JSON go to ${OUT:-gpu_check_out}, the operands of any test that misses the correctness bar to its
# misses/ folder; each step prints its last lines. A device call allows 10 minutes:
# give it "tests" with one short group, or one or two of the others.
# Usage: bash scripts/gpu_check.sh GROUP...
set -uo pipefail
groups="tests sanitizers benchmarks models decode tuning classes waves lanes warprows ctawarp fusedfew rows4k retime
  fusedvec ctacluster registers cluster stage inflight grid ncu"
[ $# -gt 0 ] || { echo "name one or more groups:" $groups; exit 2; }
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export INDUCTOR_RMSNORM_CACHE_DIR="${INDUCTOR_RMSNORM_CACHE_DIR:-/tmp/inductor_rmsnorm_cache}"
# A test that misses the correctness bar saves its operands here (tests/modules.py), to be replayed later
export INDUCTOR_RMSNORM_TEST_MISSES="${INDUCTOR_RMSNORM_TEST_MISSES:-$out/misses}"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $out/NAME.log, print its tail
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 4 "$out/$name.log"
  [ $rc -eq 0 ] || { echo "!! $name exited $rc"; status=1; }
  return $rc
}
tune() {  # tune NAME TUNE_KERNELS_ARGS...: scripts/tune_kernels.py for the plain norm, then the fused residual add
  local name=$1
  shift
  step "${name}_plain" 200 python3 scripts/tune_kernels.py "$@"
  step "${name}_fused" 200 python3 scripts/tune_kernels.py --fused-add "$@"
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
for group in "$@"; do
  case "$group" in
    tests)  # 8 workers where pytest-xdist is installed (the device image has it): 272 s on 2 H200s, not ~400
      workers=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")
      step tests 560 python3 -m pytest -q -p no:cacheprovider $workers -rfEs tests ;;
    sanitizers)
      step sweep 120 python3 scripts/sanitize_sweep.py  # builds what the sanitized runs need, outside them
      # memcheck in 13 processes at once, spread over the GPUs (one process for every size ran past 200 s): the
      # sizes in 8 shards, and the many-rows schedules at rows past their splits on an H200: the warp kernel's
      # two rows a lane group (8: a lane a row; 200: ragged whole warps; 96, 192: whole lane groups), the CTA
      # kernel's block per row in half its threads (1536, 2040 in 16-bit types) and its rows on the warp kernel
      # (264-576; 288 float32); the warp kernel's few rows of two vectors a lane in blocks of 3 warps on an H200
      # (136 float32, 264 and 512 16-bit)
      memcheck_runs=("--shard 0/8" "--shard 1/8" "--shard 2/8" "--shard 3/8" "--shard 4/8" "--shard 5/8" "--shard 6/8"
        "--shard 7/8" "--sizes 8 --tokens 1100003" "--sizes 200 --tokens 34003" "--sizes 1536 2040 --tokens 6403"
        "--sizes 96 192 264 288 384 520 576 --tokens 8447"
        "--sizes 136 264 512 --tokens 391")
      gpus=$(nvidia-smi -L | wc -l) pids=()
      for i in "${!memcheck_runs[@]}"; do
        CUDA_VISIBLE_DEVICES=$((i % gpus)) PYTORCH_NO_CUDA_MEMORY_CACHING=1 step "memcheck_$i" 400 \
          compute-sanitizer --tool memcheck --error-exitcode 1 python3 scripts/sanitize_sweep.py ${memcheck_runs[$i]} &
        pids+=($!)
      done
      for pid in "${pids[@]}"; do wait "$pid" || status=1; done
      # racecheck only concerns the CTA and wide kernels' shared-memory reductions (65528: the cluster kernel's
      # exchange too), and is slow: a few sizes
      step racecheck 200 compute-sanitizer --tool racecheck --error-exitcode 1 \
        python3 scripts/sanitize_sweep.py --sizes 520 4096 8192 12288 12296 65528 --tokens 7
      # at those few rows the wide class takes clusters: the two-pass kernel, forced, at a few rows
      step racecheck_two_pass 120 compute-sanitizer --tool racecheck --error-exitcode 1 \
        python3 scripts/sanitize_two_pass.py ;;
    benchmarks)
      step overheads 90 python3 scripts/bench_overheads.py --json "$out/overheads.json"
      step block 200 python3 scripts/bench_block.py --json "$out/block.json"
      step kernels 280 python3 scripts/bench_kernels.py --json "$out/kernels.json" ;;
    models)  # one model per step (each compiles 20 times); MODELS="llama3 qwen3 gemma3 mistral" picks them
      for model in ${MODELS:-llama3}; do
        step "models_$model" 500 python3 scripts/bench_models.py --models "$model" --json "$out/models_$model.json"
      done ;;
    decode)  # 7 files back (under the device tool's 8), at most 570 s (under its 600)
      step overheads 100 python3 scripts/bench_overheads.py --json /tmp/overheads.json
      step decode 380 python3 scripts/bench_models.py --models llama3 qwen3 --phases decode \
        --modes default reduce-overhead --json "$out/decode.json"
      step profile 90 python3 scripts/profile_model.py --model qwen3 --trace "$out" ;;
    tuning)
      tune tune --variants "" CTA_MAX_THREADS=512 PREFETCH=0 STREAMING=1 PDL=0 CTA_MANY_ROWS_WAVES=0 \
        CTA_MANY_ROWS_WAVES=100000 CTA_MANY_ROWS_LOADS=1 --hidden 1024 4096 5120 8192 16384 65536 \
        --tokens 16 1024 32768 ;;
    classes)
      tune classes --variants "" class=warp class=warp,PREFETCH=0 --hidden 512 1024 2048 --tokens 16 1024 8192 32768 ;;
    waves)
      tune waves --variants "" CTA_MANY_ROWS_WAVES=1 CTA_MANY_ROWS_WAVES=2 CTA_MANY_ROWS_WAVES=100000 \
        --hidden 2048 4096 5120 8192 --tokens 1024 2048 4096 ;;
    lanes)
      step lanes 200 python3 scripts/tune_kernels.py --variants "" WARP_WHOLE_LANES=1 --hidden 96 192 \
        --tokens 1 16 128 1024 8192 65536 ;;
    warprows)
      warprows_variants=("" WARP_WHOLE_LANES=0 WARP_WHOLE_LANES=1 WARP_WHOLE_LANES_ROWS_PER_SM=0)
      T="1024 2048 4096 6144 8192 12288 16384 32768 65536"
      step warprows_bf16 200 python3 scripts/tune_kernels.py --variants "${warprows_variants[@]}" --hidden 96 192 \
        --tokens $T
      step warprows_fp32 200 python3 scripts/tune_kernels.py --variants "${warprows_variants[@]}" --dtype float32 \
        --hidden 48 96 --tokens $T ;;
    ctawarp)
      ctawarp_variants=("" CTA_WARP_ROWS_PER_SM=0 CTA_WARP_ROWS_PER_SM=1)
      T="128 1024 2048 4096 8192 16384 32768 65536"
      step ctawarp_bf16 200 python3 scripts/tune_kernels.py --variants "${ctawarp_variants[@]}" --hidden 520 576 \
        --tokens $T
      step ctawarp_fp32 200 python3 scripts/tune_kernels.py --variants "${ctawarp_variants[@]}" --dtype float32 \
        --hidden 260 288 --tokens $T
      step ctawarp_fused 200 python3 scripts/tune_kernels.py --fused-add --variants "${ctawarp_variants[@]}" \
        --hidden 264 384 520 576 --tokens $T ;;
    fusedfew)
      T="1 8 16 32 64 128 256 512 1024 2048"
      step fusedfew_bf16 300 python3 scripts/tune_kernels.py --fused-add --variants "" class=cta \
        --hidden 64 96 128 192 256 --tokens $T
      step fusedfew_fp32 200 python3 scripts/tune_kernels.py --fused-add --variants "" class=cta --dtype float32 \
        --hidden 32 64 128 --tokens $T ;;
    rows4k)
      T="8192 16384 32768 65536"
      V="SLOW_MEMORY_SM_GBPS=0 SLOW_MEMORY_SM_GBPS=1000"
      step rows4k_bf16 200 python3 scripts/tune_kernels.py --variants $V --hidden 1024 1280 1528 --tokens $T
      step rows4k_fp32 150 python3 scripts/tune_kernels.py --variants $V --dtype float32 --hidden 512 640 --tokens $T
      step rows4k_fused 150 python3 scripts/tune_kernels.py --fused-add --variants $V --hidden 512 640 --tokens $T
      step rows4k_fused_fp32 100 python3 scripts/tune_kernels.py --fused-add --variants $V --dtype float32 \
        --hidden 320 --tokens $T ;;
    retime)
      tune retime_threads --variants "" CTA_MAX_THREADS=512 --hidden 4608 5120 6144 7168 8192 \
        --tokens 128 512 1024 2048 8192 32768
      tune retime_prefetch --variants "" PREFETCH=0 --hidden 256 2048 4096 8192 --tokens 128 1024 4096
      loads_variants=("" CTA_MANY_ROWS_LOADS=1 CTA_MANY_ROWS_LOADS=4)
      step retime_loads_plain 200 python3 scripts/tune_kernels.py --variants "${loads_variants[@]}" \
        --hidden 1536 2048 --tokens 8192 32768
      step retime_loads_fused 200 python3 scripts/tune_kernels.py --fused-add --variants "${loads_variants[@]}" \
        --hidden 1536 2048 4096 --tokens 8192 32768 ;;
    fusedvec)
      T="128 512 1024 2048 4096 8192 32768"
      step fusedvec_bf16 250 python3 scripts/tune_kernels.py --fused-add --variants "" CTA_FUSED_ONE_VECTOR=0 \
        --hidden 4608 5120 5376 6144 6400 7168 7680 8192 --tokens $T
      step fusedvec_fp32 150 python3 scripts/tune_kernels.py --fused-add --variants "" CTA_FUSED_ONE_VECTOR=0 \
        --dtype float32 --hidden 2560 3072 4096 --tokens $T
      step fusedvec_tests 200 env INDUCTOR_RMSNORM_TUNING=CTA_FUSED_ONE_VECTOR=0 python3 -m pytest -q \
        -p no:cacheprovider tests/test_hardening_cuda.py tests/test_cuda_kernels.py -k "fused_add_matches_eager and \
        ([4096- or [5120- or [7168- or [7680- or [8192-) or run_or_the_batch and ([5120- or [4096-float32)" ;;
    ctacluster)
      tune ctacluster --variants "" CTA_CLUSTER_BLOCKS=0 --hidden 9216 12288 13824 16384 20480 24576 --tokens 1 4 16
      tune ctacluster_fp32 --variants "" CTA_CLUSTER_BLOCKS=0 --dtype float32 --hidden 10240 12288 --tokens 1 4 16
      step ctacluster_tests 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py \
        tests/test_hardening_cuda.py -k "[9216- or [11264- or [12288- or [13824- or [16384- or [24568- or [24576- or \
        run_or_the_batch" ;;
    registers)
      tune registers_fp32 --variants "" WIDE_MIN_BLOCKS=0 WIDE_MIN_BLOCKS=2 --dtype float32 \
        --hidden 12292 16384 20480 32768 36864 49152 65536 --tokens 1024 8192
      tune registers_bf16 --variants "" WIDE_MIN_BLOCKS=1 WIDE_MIN_BLOCKS=2 --hidden 24584 32768 40960 65536 \
        --tokens 1024 8192 ;;
    stage)
      step stage_tests 150 python3 -m pytest -q -p no:cacheprovider \
        $(python3 -c "import xdist" 2>/dev/null && echo "-n 8") tests/test_cuda_kernels.py tests/test_hardening_cuda.py \
        -k "[12292- or [16384-float32 or [24584- or [32776- or [40960- or [65528- or [65536-"
      step stage_memcheck 100 compute-sanitizer --tool memcheck --error-exitcode 1 python3 scripts/sanitize_two_pass.py
      tune stage_fp32 --variants "" WIDE_STAGE=0 --dtype float32 --hidden 16384 32768 36864 65536 --tokens 128 1024 8192
      tune stage_bf16 --variants "" WIDE_STAGE=0 --hidden 32768 40960 65536 --tokens 128 1024 8192
      step stage_racecheck 100 compute-sanitizer --tool racecheck --error-exitcode 1 python3 scripts/sanitize_two_pass.py ;;
    inflight)
      # The wide sizes' CUDA tests under the switches' other settings and memcheck over the two-pass kernel with
      # the fused add's weights ahead too (the defaults' run in stage), then the defaults against the others
      inflight_off=WIDE_PIPELINE=0,WIDE_WEIGHT_AHEAD=0
      for switches in off:$inflight_off weight_ahead:WIDE_WEIGHT_AHEAD=1; do
        INDUCTOR_RMSNORM_TUNING=${switches#*:} step "inflight_tests_${switches%%:*}" 150 python3 -m pytest -q \
          -p no:cacheprovider $(python3 -c "import xdist" 2>/dev/null && echo "-n 8") tests/test_cuda_kernels.py \
          tests/test_hardening_cuda.py -k "[12292- or [16384-float32 or [24584- or [32776- or [40960- or [65528- or [65536-"
      done
      INDUCTOR_RMSNORM_TUNING=WIDE_WEIGHT_AHEAD=1 step inflight_memcheck 100 compute-sanitizer --tool memcheck \
        --error-exitcode 1 python3 scripts/sanitize_two_pass.py
      step inflight_fp32 200 python3 scripts/tune_kernels.py --variants "" $inflight_off WIDE_PIPELINE=0 \
        WIDE_WEIGHT_AHEAD=0 --dtype float32 --hidden 20480 28672 36864 49152 65536 --tokens 128 1024 8192
      step inflight_bf16 150 python3 scripts/tune_kernels.py --variants "" $inflight_off --hidden 40960 49152 65536 \
        --tokens 128 1024 8192
      step inflight_fused 150 python3 scripts/tune_kernels.py --fused-add --variants "" WIDE_WEIGHT_AHEAD=1 \
        --dtype float32 --hidden 32768 49152 65536 --tokens 128 1024 8192 ;;
    cluster)
      cluster_variants=("" WIDE_CLUSTER_BLOCKS_PER_SM=0 WIDE_CLUSTER_BLOCKS_PER_SM=1000000)
      tune cluster --variants "${cluster_variants[@]}" --hidden 32768 65536 --tokens 1 4 16 32 64 128 1024 8192
      step cluster_fp32 200 python3 scripts/tune_kernels.py --variants "${cluster_variants[@]}" --dtype float32 \
        --hidden 16384 32768 65536 --tokens 1 4 16 32 64 128 1024 8192
      for variant in plain fused; do
        step "cluster_grid_$variant" 200 python3 scripts/bench_kernels.py --hidden 16384 32768 65536 \
          --tokens 1 16 128 1024 $([ $variant = fused ] && echo --fused-add) --providers ours F.rms_norm inductor liger \
          --json "$out/cluster_grid_$variant.json"
      done ;;
    ncu)  # --clock-control none: leave the GPU's clocks as they are (the device tool's METHOD.md)
      for variant in plain fused; do
        step "ncu_$variant" 240 ncu --clock-control none --profile-from-start off --section SpeedOfLight \
          --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats --section LaunchStats \
          --csv --page details --log-file "$out/ncu_$variant.csv" python3 scripts/profile_kernels.py \
          --hidden 4096 8192 --tokens 32768 $([ $variant = fused ] && echo --fused-add)
      done ;;
    grid)
      dtype=${GRID_DTYPE:-bfloat16} variant=${GRID_VARIANT:-plain}
      step "grid_${dtype}_$variant" 560 python3 scripts/bench_kernels.py --grid all-sizes --dtype "$dtype" \
        $([ "$variant" = fused ] && echo --fused-add) --providers ours F.rms_norm inductor liger \
        --json "$out/grid_${dtype}_$variant.json" ;;
    *)
      echo "unknown group $group; the groups:" $groups; exit 2 ;;
  esac
done
exit $status
