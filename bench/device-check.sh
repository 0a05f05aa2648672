#!/usr/bin/env bash
# The one GPU check of a session lent a device: every figure the README's GPU section needs, in about 7 minutes.
#   here:   npm install && bash ../shared/tools/device-prep.sh      (packs Node.js, the Vulkan loader, node_modules)
#   device: bash bench/device-check.sh    carrying .device and dist; files land in $OUT (8 at most)
# summary.txt ends with the verdicts of bench/device-verdicts.ts: the decisions the figures call for.
# Steps run in order of importance, each under its own timeout and the whole under DEVICE_CHECK_BUDGET seconds
# (default 420; a lent machine's call allows 600 s: pass 540); a failed or skipped step is noted in summary.txt and
# the next one runs. DEVICE_CHECK_TINY=1 shrinks every step (one layer, a few tokens; the demo is planned, not run) to
# prove the script end to end on a software GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
TINY=${DEVICE_CHECK_TINY:-}
BUDGET=${DEVICE_CHECK_BUDGET:-420}
# A software adapter is some 1000× slower than a GPU: the shrunk run gives each step five times its time.
SLOW=$([ -n "$TINY" ] && echo 5 || echo 1)
START=$SECONDS
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

if [ -f .device/prologue.sh ]; then
  source .device/prologue.sh
elif [ -z "$TINY" ]; then
  echo "device-check: .device/prologue.sh is missing: run bash ../shared/tools/device-prep.sh here first" | tee -a "$SUMMARY"
  exit 1
fi
# The tfjs gradient bundle is build output (dist/vendor); rebuild it when dist was not carried along.
if [ ! -f dist/vendor/tfjs-gradients.js ]; then
  node node_modules/esbuild/bin/esbuild node_modules/@tensorflow/tfjs-core/dist/register_all_gradients.js --bundle --format=esm \
    --platform=node --log-level=warning --outfile=dist/vendor/tfjs-gradients.js
fi

# step NAME MAX_SECONDS LOGFILE COMMAND...: runs COMMAND with its output appended to LOGFILE, under the smaller of
# MAX_SECONDS and the budget left; records the outcome and the time taken in summary.txt.
step() {
  local name=$1 max=$(($2 * SLOW)) log=$3
  shift 3
  local left=$((BUDGET - (SECONDS - START)))
  local limit=$((max < left ? max : left))
  if [ "$limit" -lt 15 ]; then
    echo "skipped  $name (budget spent: $((SECONDS - START)) of $BUDGET s)" | tee -a "$SUMMARY"
    return
  fi
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s)" >> "$log"
  timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  local verdict=ok
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && verdict="timed out"
  [ "$rc" -ne 0 ] && [ "$verdict" = ok ] && verdict="failed (exit $rc)"
  printf '%-9s %s in %ss\n' "$verdict" "$name" "$((SECONDS - t0))" | tee -a "$SUMMARY"
}

BENCH=(node --import tsx bench/train.bench.ts --backend webgpu)
if [ -n "$TINY" ]; then
  SMALL=(--shape small --steps 1 --batch 2 --seq 16 --gen 3)
  MEDIUM=(--shape medium --layers 1 --steps 1 --batch 2 --seq 16 --gen 3)
  LARGE=(--shape large --layers 1 --steps 1 --batch 1 --seq 16 --gen 3)
  M1=(--shape mistral7b --layers 1 --steps 1 --batch 1 --seq 4 --gen 3)
  M2=()
  TORCH_ARGS=(--layers 1 --steps 1 --batch 2 --seq 16 --gen 3)
  TESTS='^(model|split-weights)\.test'
else
  SMALL=(--shape small) MEDIUM=(--shape medium) LARGE=(--shape large)
  # Per-layer figures as PyTorch measures them: activations kept (the 32-layer run below recomputes them).
  M1=(--shape mistral7b --layers 1 --checkpointing off) M2=(--shape mistral7b --layers 2 --checkpointing off)
  TORCH_ARGS=()
  TESTS='^(model|pause|generate|lora|model-io|split-weights|webgpu-kernels|webgpu-model|webgpu-matmul|webgpu-matmul-model|webgpu-bf16|train-trace|gpu-errors|activation-checkpointing)\.test'
fi

{
  date -u
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; else echo "no nvidia-smi"; fi
  node --version
  # The adapter's features, and whether tensor cores are reachable from WGSL (subgroup matrices: configs, one product).
  timeout --kill-after=5 60 node --import tsx bench/adapter-probe.ts 2>&1 | grep -v '^Warning: maxDynamic'
  # Every backend as a run would see it, the adapter's subgroups (whether lanes attention can run), the variables.
  timeout --kill-after=5 60 node bin/pausepipe.js backends 2>&1 | grep -v '^Warning: maxDynamic'
} > "$OUT/gpu.txt" 2>&1
echo "gpu: $(sed -n '2,3p;/^adapter:/p;/^subgroup matrix/p;/^GPU adapter:/p' "$OUT/gpu.txt" | tr '\n' ' ')" | tee -a "$SUMMARY"

# 1. The model suites on this GPU (the webgpu suites run because an adapter exists): fixture parity, KV cache, LoRA, pause, save/load.
step "model tests on webgpu" 120 "$OUT/tests.txt" node tests/run.mjs "$TESTS" tests/stages/lm

# 1b. The WGSL GEMM against tfjs's matMul at 4096³ and the model's shapes (PAUSEPIPE_MATMUL=wgsl's case).
step "matmul bench: tfjs vs wgsl" 120 "$OUT/bench.txt" node --import tsx bench/matmul.bench.ts ${TINY:+--trials 1}

# 2. PyTorch on the same shapes, one process for all (its start-up is the slow part).
TORCH_JSON="$OUT/torch.json"
echo '[]' > "$TORCH_JSON"
if python3 -c 'import torch, transformers' 2>/dev/null; then
  step "pytorch small, medium, large" 120 "$OUT/torch.txt" python3 bench/torch-bench.py --shape small,medium,large ${TORCH_ARGS[@]+"${TORCH_ARGS[@]}"} --out "$OUT/torch-shapes.json"
  step "pytorch mistral7b, 1 and 2 layers" 90 "$OUT/torch.txt" bash -c "
    python3 bench/torch-bench.py --shape mistral7b ${TINY:+--steps 1 --batch 1 --seq 16 --gen 3} --layers 1 --out '$OUT/torch-m1.json' &&
    python3 bench/torch-bench.py --shape mistral7b ${TINY:+--steps 1 --batch 1 --seq 16 --gen 3} --layers 2 --out '$OUT/torch-m2.json'"
  python3 -c "import json, sys; print(json.dumps(sum((json.load(open(f)) for f in sys.argv[1:]), [])))" "$OUT"/torch-*.json > "$TORCH_JSON" 2>/dev/null
  rm -f "$OUT"/torch-*.json
else
  echo "pytorch: python3 with torch and transformers not found; no comparison" | tee -a "$SUMMARY"
fi

# 3. Our bench on the same shapes, each with the roofline, the kernel counts and the PyTorch ratio; medium and the 7B
# layer also print one step's GPU time per kernel (--profile: every dispatch timed alone, before the timed steps).
step "bench small" 60 "$OUT/bench.txt" "${BENCH[@]}" "${SMALL[@]}" --torch "$TORCH_JSON"
step "bench medium" 75 "$OUT/bench.txt" "${BENCH[@]}" "${MEDIUM[@]}" --torch "$TORCH_JSON" --profile
step "bench medium, wgsl matmul" 75 "$OUT/bench.txt" "${BENCH[@]}" "${MEDIUM[@]}" --torch "$TORCH_JSON" --matmul wgsl --profile
# 3a. Attention with each row's head split over a subgroup's lanes (attention-lanes.ts) instead of one invocation per row.
step "bench medium, lanes attention" 75 "$OUT/bench.txt" "${BENCH[@]}" "${MEDIUM[@]}" --torch "$TORCH_JSON" --attention lanes --profile

# 4. The seed's model: one and two layers of Mistral-7B (their difference is one layer's cost), pause-only training.
step "bench mistral7b, 1 layer" 150 "$OUT/mistral7b.txt" "${BENCH[@]}" "${M1[@]}" --torch "$TORCH_JSON" --profile
step "bench mistral7b, 1 layer, wgsl matmul" 150 "$OUT/mistral7b.txt" "${BENCH[@]}" "${M1[@]}" --torch "$TORCH_JSON" --matmul wgsl --profile
step "bench mistral7b, 1 layer, lanes attention" 150 "$OUT/mistral7b.txt" "${BENCH[@]}" "${M1[@]}" --torch "$TORCH_JSON" --attention lanes --profile
# 4a. The frozen projections kept as bfloat16 (half their memory; the WGSL products read them): as fast as float32?
step "bench mistral7b, 1 layer, bf16 frozen weights" 150 "$OUT/mistral7b.txt" "${BENCH[@]}" "${M1[@]}" --torch "$TORCH_JSON" --frozen-weights bf16 --profile
# (Shrunk, the second run would only repeat the first on a software adapter, at some ten minutes each.)
[ -z "$TINY" ] && step "bench mistral7b, 2 layers" 90 "$OUT/mistral7b.txt" "${BENCH[@]}" "${M2[@]}" --torch "$TORCH_JSON"

# 5. All 32 layers of Mistral-7B (29 GB of float32 weights, made on the GPU) with activation checkpointing, as the
# seed trains: the bench prints its memory estimate first, and exits non-zero with the GPU's error if memory runs out.
[ -z "$TINY" ] && step "bench mistral7b, 32 layers, checkpointing" 240 "$OUT/mistral7b.txt" "${BENCH[@]}" --shape mistral7b --torch none
# The same with the frozen projections in bfloat16: 14 GB of weights instead of 28, the peak the verdict compares.
[ -z "$TINY" ] && step "bench mistral7b, 32 layers, checkpointing, bf16 frozen weights" 240 "$OUT/mistral7b.txt" "${BENCH[@]}" --shape mistral7b --torch none --frozen-weights bf16

# 5a. After the seed's model (the budget may end first): both alternatives at once (the figure the defaults would
# give if both verdicts say switch), decoding without replay and 4 steps ahead, the large shape.
step "bench medium, wgsl matmul and lanes attention" 75 "$OUT/bench.txt" "${BENCH[@]}" "${MEDIUM[@]}" --torch "$TORCH_JSON" --matmul wgsl --attention lanes
# Decoding with every step through tfjs (no replay, decode-graph.ts): the replay's gain on this GPU.
step "bench small, decode graph off" 60 "$OUT/bench.txt" env PAUSEPIPE_DECODE_GRAPH=off "${BENCH[@]}" "${SMALL[@]}" --torch "$TORCH_JSON"
step "bench medium, decode graph off" 75 "$OUT/bench.txt" env PAUSEPIPE_DECODE_GRAPH=off "${BENCH[@]}" "${MEDIUM[@]}" --torch "$TORCH_JSON"
# Four steps in flight instead of one before each read of a step's tokens: whether the read's latency bounds decoding.
step "bench small, lookahead 4" 60 "$OUT/bench.txt" env PAUSEPIPE_DECODE_LOOKAHEAD=4 "${BENCH[@]}" "${SMALL[@]}" --torch "$TORCH_JSON"
step "bench large" 90 "$OUT/bench.txt" "${BENCH[@]}" "${LARGE[@]}" --torch "$TORCH_JSON"

# 5b. The GEMM on six other block tiles at the same shapes (which tile to make the default).
[ -z "$TINY" ] && step "matmul bench: other wgsl tiles" 120 "$OUT/bench.txt" node --import tsx bench/matmul.bench.ts --trials 2 --other-tiles

# 6. The demo on this GPU, from an empty cache (2 CPU cores take about 5–7 minutes).
DEMO_CACHE=$(mktemp -d)
if [ -n "$TINY" ]; then
  step "demo plan (tiny: not run)" 60 "$OUT/demo.txt" node bin/pausepipe.js plan pipelines/demo.pipe --cache-dir "$DEMO_CACHE"
else
  rm -rf "$DEMO_CACHE" && mkdir -p "$DEMO_CACHE"
  step "demo --backend webgpu" 240 "$OUT/demo.txt" bash -c "time node bin/pausepipe.js run pipelines/demo.pipe --backend webgpu --cache-dir '$DEMO_CACHE'"
fi
rm -rf "$DEMO_CACHE"

echo "done in $((SECONDS - START)) s" | tee -a "$SUMMARY"
grep -h -E '^(backend|adapter limits|roofline|memory estimate|shape|train|decode|kernels|memory|pytorch|matmul |profile of one step|frozen weights)|^  other wgsl tiles|^  wgsl with B packed|^  [A-Za-z].* ms +[0-9.]+%' \
  "$OUT/bench.txt" "$OUT/mistral7b.txt" 2>/dev/null >> "$SUMMARY"
# What the figures call for (which product and tile to make the default, whether replay and the lookahead pay).
node --import tsx bench/device-verdicts.ts "$OUT" >> "$SUMMARY" 2>&1
