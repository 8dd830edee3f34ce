#!/usr/bin/env bash
# The GPU benchmark as run on the lent H100: each mixer in its own process with a time limit (one slow or
# failing mixer cannot take the others down), merged into one table. Usage: bash benchmarks/run_gpu.sh OUT PART
#   PART=model: the 12-layer model for every mixer; PART=layers: one layer of every mixer at every length.
set -u
out=$1; part=$2; text=${TEXT:-.bench_data/tinyshakespeare.txt}
tmp=/tmp/bench_$part; mkdir -p "$tmp" "$out"
files=()
if [ "$part" = model ]; then
  for m in ${MIXERS:-attention prism gdn gla mamba2 ttt_mlp_ckpt}; do
    timeout "${LIMIT:-150}" python3 benchmarks/throughput.py ${BENCH_ARGS:-} --skip-layers --model-mixers "$m" --text "$text" \
      --out "$tmp/$m" 2>&1 | grep -E '^[0-9:]{8} |Error| step ' ; files+=("$tmp/$m/results.json")
  done
else
  # prism,gdn share a process: their layers are timed in alternating rounds, so their ratio sees one host speed
  for m in ${MIXERS:-prism,gdn attention prism_chunk gla mamba2 ttt_mlp}; do
    timeout "${LIMIT:-200}" python3 benchmarks/throughput.py ${BENCH_ARGS:-} --skip-model --mixers "$m" --text "$text" \
      --out "$tmp/$m" 2>&1 | grep -E '^[0-9:]{8} |Error| step ' ; files+=("$tmp/$m/results.json")
  done
fi
existing=(); for f in "${files[@]}"; do [ -f "$f" ] && existing+=("$f"); done
[ ${#existing[@]} -gt 0 ] || { echo "no mixer finished"; exit 1; }
python3 benchmarks/throughput.py --out "$out" --merge "${existing[@]}" > /dev/null && cat "$out/results.md"
