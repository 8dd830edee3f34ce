#!/usr/bin/env bash
# Work on a GPU machine lent for short calls (docs/gpu.md): set it up from carried files, start jobs that outlive
# the call, then wait for them and collect what they wrote into $OUT, the folder whose files come back.
#
#   bash scripts/gpu_run.sh setup                  install what the call carries (below); print GPU and versions
#   bash scripts/gpu_run.sh start NAME [--results DIR]... -- CMD [ARG]...
#                                                  run CMD in the background in a session of its own (it outlives
#                                                  the call); log, exit code and times in $GPU_JOBS/NAME
#   bash scripts/gpu_run.sh wait SECONDS [NAME]... until those jobs (default: all) ended or SECONDS passed; then
#                                                  $OUT/summary.txt (states, exit codes, log tails) and one
#                                                  $OUT/NAME.tgz per job (its folder and its --results folders;
#                                                  over GPU_MAX_*_MB, first without the finished runs' checkpoints,
#                                                  then without the results)
#   bash scripts/gpu_run.sh status                 one line per job: state (rc=N, running, lost), seconds, command
#   bash scripts/gpu_run.sh stop NAME              end a running job (its whole process group)
#   bash scripts/gpu_run.sh throughput model|layers DIR
#                                                  benchmarks/throughput.py with each mixer in its own process
#                                                  under a time limit (one slow or failing mixer cannot take the
#                                                  others down), merged into DIR/results.{json,md} (with the
#                                                  ratios of the mixers measured in the call)
#   bash scripts/gpu_run.sh pack DEST DIR [ITEM]...
#                                                  (here, before the calls) xz-tar DIR's ITEMs (default: all) in
#                                                  parts of $GPU_PART_SIZE, one folder each: DEST/aa/part.aa, ...
#
# Carried files, each optional, read from $GPU_CARRY (the repository root); name their folders in the call's carry.
# A part too big for one call travels in the next: setup keeps parts in $GPU_STASH until all have come.
#   .whl/*.whl  wheels, installed into $GPU_SITE (pip --no-deps)
#   .trb/       triton for the GPU's Python, unpacked into $GPU_SITE: from the wheel (pip download --no-deps
#               --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 triton==3.7.1 -d w),
#               unzipped to w/x: `pack .trb w/x triton triton-3.7.1.dist-info`
#   .tc/        a Triton cache (python -m tools.warm_triton_cache), unpacked into $TRITON_CACHE_DIR, which must be
#               the same absolute path here and there: `pack .tc "$TRITON_CACHE_DIR"`
#
# Environment: GPU_JOBS (/tmp/gpu_jobs), GPU_SITE (/tmp/site), GPU_STASH (/tmp/gpu_stash), GPU_CARRY (repository
# root), TRITON_CACHE_DIR (/root/tcache), PYTHON (python3), OUT, GPU_MAX_FILE_MB (15) and GPU_MAX_TOTAL_MB (60)
# for what comes back, GPU_PART_SIZE (50M). throughput: MIXERS (space-separated; prism,gdn shares one process;
# model rows as KEY or KEY:MODE, e.g. "prism prism:reduce-overhead gdn gdn:reduce-overhead ttt_mlp_compile"),
# LIMIT (seconds per entry), BENCH_ARGS, TEXT (data/tinyshakespeare.txt, when present).
# Every subcommand and job runs in the repository root with PYTHONPATH=$GPU_SITE:<root>, TRITON_CACHE_DIR,
# TRITON_CACHE_AUTOTUNING=1 (tuned configs reused across processes) and PYTHONUNBUFFERED=1.
#
# A session, one call per line (carry .whl and .trb/aa, then .trb/ab and .tc/aa, ...):
#   bash scripts/gpu_run.sh setup
#   bash scripts/gpu_run.sh setup && bash scripts/gpu_run.sh start gpu_tests -- python3 -m pytest -p tools.noautotune \
#       tests/kernels/test_prism_triton_gpu.py && bash scripts/gpu_run.sh wait 500
#   bash scripts/gpu_run.sh start layers --results /tmp/layers -- bash scripts/gpu_run.sh throughput layers /tmp/layers
#   bash scripts/gpu_run.sh wait 550                # again in a later call while the machine is warm

die() { echo "gpu_run: $*" >&2; exit 2; }

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

job_names() { [ -d "$JOBS" ] && find "$JOBS" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort; }

job_state() {  # rc=N when it ended; running; lost when it ended without an exit code (its process was killed)
  local dir=$JOBS/$1
  if [ -f "$dir/rc" ]; then echo "rc=$(cat "$dir/rc")"
  elif [ ! -f "$dir/pid" ] || kill -0 "$(cat "$dir/pid")" 2>/dev/null; then echo running
  else echo lost; fi
}

job_line() {
  local dir=$JOBS/$1 start end
  start=$(cat "$dir/start"); end=$(cat "$dir/end" 2>/dev/null || date +%s)
  printf '%-16s %-9s %6ss  started %s  %s\n' "$1" "$(job_state "$1")" $((end - start)) \
    "$(date -d "@$start" +%T)" "$(cat "$dir/cmd")"
}

cmd_setup() {
  shopt -s nullglob
  mkdir -p "$SITE" "$JOBS"
  {
    local wheels=("$CARRY"/.whl/*.whl)
    if [ ${#wheels[@]} -gt 0 ]; then
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "${wheels[@]}" || die "setup: pip could not install the carried wheels"
      echo "wheels: ${#wheels[@]} installed into $SITE"
    fi
    unpack_parts trb "$SITE" "triton bundle"
    unpack_parts tc "$TRITON_CACHE_DIR" "Triton cache"
    print_env
  } 2>&1 | tee "$JOBS/setup.log"
  return "${PIPESTATUS[0]}"
}

unpack_parts() {  # KIND DEST LABEL: stash this call's $CARRY/.KIND parts; unpack them all once they are complete
  local stash=$STASH/$1 dest=$2 label=$3 new=0 part
  local parts=("$CARRY/.$1"/part.* "$CARRY/.$1"/*/part.*)
  [ ${#parts[@]} -gt 0 ] || [ -d "$stash" ] || return 0
  mkdir -p "$stash"
  for part in "${parts[@]}"; do
    cmp -s "$part" "$stash/${part##*/}" || { cp "$part" "$stash/" && new=1; }
  done
  [ $new = 1 ] && rm -f "$stash/unpacked"
  if [ -f "$stash/unpacked" ]; then echo "$label: unpacked in an earlier call"; return 0; fi
  local have=("$stash"/part.*)
  if ! cat "${have[@]}" | xz -t 2>/dev/null; then  # a truncated stream: later parts are still to come
    echo "$label: ${#have[@]} part(s) so far (${have[*]##*/}); carry the next in a later call"
    return 0
  fi
  mkdir -p "$dest" && cat "${have[@]}" | xz -d | tar -x -C "$dest" || die "setup: could not unpack the $label"
  touch "$stash/unpacked"
  echo "$label: ${#have[@]} part(s) unpacked into $dest"
}

print_env() {
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else
    echo "no nvidia-smi: no NVIDIA GPU here"
  fi
  "$PYTHON" - <<'PY'
import platform
from importlib.metadata import PackageNotFoundError, version

versions = [f"python {platform.python_version()}"]
for name, dist in [("torch", "torch"), ("triton", "triton"), ("fla", "flash-linear-attention"),
                   ("lightning", "lightning")]:
    try:
        versions.append(f"{name} {version(dist)}")
    except PackageNotFoundError:
        versions.append(f"{name} missing")
print(" ".join(versions))
try:
    import torch
    print("cuda:", torch.cuda.get_device_name() if torch.cuda.is_available() else "not available to torch")
except ImportError:
    pass
PY
}

cmd_start() {
  local name=${1:-} results=() dir
  [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "start: NAME must be letters, digits, '.', '_' or '-', got '$name'"
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    [ "$1" = "--results" ] && [ $# -ge 2 ] || die "start: usage: start NAME [--results DIR]... -- CMD [ARG]..."
    results+=("$(realpath -m "$2")"); shift 2
  done
  [ $# -ge 2 ] || die "start: no command after '--' (usage: start NAME [--results DIR]... -- CMD [ARG]...)"
  shift
  dir=$JOBS/$name
  [ -d "$dir" ] && [ "$(job_state "$name")" = running ] && die "start: job $name is still running"
  rm -rf "$dir" && mkdir -p "$dir"
  printf '%q ' "$@" > "$dir/cmd"
  [ ${#results[@]} -eq 0 ] || printf '%s\n' "${results[@]}" > "$dir/results"
  date +%s > "$dir/start"
  # bash -c holds the whole job script in memory: the next call may replace the working tree's files
  setsid nohup bash -c 'echo $$ > "$1/pid"; "${@:2}" > "$1/log" 2>&1 < /dev/null; rc=$?
                        date +%s > "$1/end"; echo $rc > "$1/rc"' gpu_run_job "$dir" "$@" > /dev/null 2>&1 < /dev/null &
  for _ in $(seq 50); do [ -f "$dir/pid" ] && break; sleep 0.1; done
  [ -f "$dir/pid" ] || die "start: job $name did not start"
  echo "started $name (pid $(cat "$dir/pid")): $(cat "$dir/cmd")"
}

cmd_stop() {
  local name=${1:-}
  [ -d "$JOBS/$name" ] && [ -n "$name" ] || die "stop: no job '$name'"
  [ "$(job_state "$name")" = running ] || die "stop: job $name is not running ($(job_state "$name"))"
  kill -- -"$(cat "$JOBS/$name/pid")"
  date +%s > "$JOBS/$name/end"; echo 143 > "$JOBS/$name/rc"  # as a shell reports a job ended by SIGTERM
  echo "stopped $name"
}

cmd_status() {
  local name
  for name in $(job_names); do job_line "$name"; done
}

cmd_wait() {
  local limit=${1:-} names name busy
  [[ $limit =~ ^[0-9]+$ ]] || die "wait: usage: wait SECONDS [NAME]..."
  [ -n "${OUT:-}" ] || die "wait: set OUT to the folder whose files come back"
  shift
  names=("$@"); [ ${#names[@]} -gt 0 ] || mapfile -t names < <(job_names)
  for name in "${names[@]}"; do [ -d "$JOBS/$name" ] || die "wait: no job '$name'"; done
  local deadline=$((SECONDS + limit))
  while [ $SECONDS -lt $deadline ]; do
    busy=0
    for name in "${names[@]}"; do [ "$(job_state "$name")" = running ] && busy=1; done
    [ $busy = 0 ] && break
    sleep 1
  done
  collect
}

collect() {  # $OUT/summary.txt and one archive per job (one for all beyond 7 jobs), within what comes back
  local names notes=() name file
  mapfile -t names < <(job_names)
  mkdir -p "$OUT"
  local max=$((GPU_MAX_FILE_MB * 1048576)) left=$((GPU_MAX_TOTAL_MB * 1048576))
  if [ ${#names[@]} -le 7 ]; then
    for name in "${names[@]}"; do pack_jobs "$OUT/$name.tgz" "$name"; done
  elif [ ${#names[@]} -gt 0 ]; then
    pack_jobs "$OUT/jobs.tgz" "${names[@]}"
  fi
  {
    echo "gpu_run: $(date '+%F %T'), ${#names[@]} job(s) in $JOBS"
    [ -f "$JOBS/setup.log" ] && sed 's/^/setup: /' "$JOBS/setup.log"
    for name in "${names[@]}"; do job_line "$name"; done
    [ ${#notes[@]} -eq 0 ] || printf '%s\n' "${notes[@]}"
    for name in "${names[@]}"; do
      echo; echo "== $name: last lines of its log"
      tail -n 20 "$JOBS/$name/log" 2>/dev/null
    done
  } > "$OUT/summary.txt"
  cat "$OUT/summary.txt"
}

finished_checkpoints() {  # NAME...: archive names of the *.ckpt files of finished runs (train.py's summary.json
  local name r s run    #   says "status": "finished") in the jobs' --results folders
  for name in "$@"; do
    [ -f "$JOBS/$name/results" ] || continue
    while read -r r; do
      [ -d "$r" ] || continue
      grep -rl --include=summary.json '"status": "finished"' "$r" 2>/dev/null | while read -r s; do
        run=$(dirname "$s")
        find "$run" -name '*.ckpt' | while read -r f; do echo "$(basename "$r")/${f#"$r"/}"; done
      done
    done < "$JOBS/$name/results"
  done
}

pack_jobs() {  # FILE NAME...: the jobs' folders and --results folders; without the results when over the limits
  local file=$1 name r; shift
  local with=()
  for name in "$@"; do
    with+=(-C "$JOBS" "$name")
    if [ -f "$JOBS/$name/results" ]; then
      while read -r r; do
        if [ -e "$r" ]; then with+=(-C "$(dirname "$r")" "$(basename "$r")"); else notes+=("$name: no $r"); fi
      done < "$JOBS/$name/results"
    fi
  done
  tar -czf "$file" "${with[@]}"
  if too_big "$file"; then
    # finished runs need no checkpoint to go on, and their metrics are in their summary.json: drop those first
    local skip=$JOBS/.skip
    finished_checkpoints "$@" > "$skip"
    [ -s "$skip" ] && tar -czf "$file" --no-wildcards --exclude-from="$skip" "${with[@]}"
    if [ -s "$skip" ] && ! too_big "$file"; then
      notes+=("${file##*/}: the checkpoints of $(grep -c . "$skip") finished run file(s) left out (over what comes back)")
    else
      notes+=("${file##*/}: results left out ($(mib "$file") MiB is over what comes back)")
      tar -czf "$file" -C "$JOBS" "$@"
      if too_big "$file"; then notes+=("${file##*/}: left out too ($(mib "$file") MiB of logs)"); rm -f "$file"; fi
    fi
  fi
  [ -f "$file" ] && left=$((left - $(stat -c %s "$file")))
  return 0
}

too_big() { local size; size=$(stat -c %s "$1"); [ "$size" -gt "$max" ] || [ "$size" -gt "$left" ]; }  # over what comes back

mib() { echo $(($(stat -c %s "$1") / 1048576)); }

cmd_throughput() {
  local part=${1:-} out=${2:-} mixers rows limit m dir rc files=() text_arg=()
  case $part in
    # an entry KEY:MODE is that model row compiled in that mode (prism:reduce-overhead); KEY alone: in BENCH_ARGS'
    # --model-compile modes (default: eager)
    model) mixers=${MIXERS:-attention prism gdn gla mamba2 ttt_mlp_compile}; rows=(--skip-layers --model-mixers)
           limit=${LIMIT:-150} ;;
    # prism,gdn share a process: their layers are timed in alternating rounds, so their ratio sees one host speed
    layers) mixers=${MIXERS:-prism,gdn attention prism_chunk gla mamba2 ttt_mlp}; rows=(--skip-model --mixers)
            limit=${LIMIT:-200} ;;
    *) die "throughput: usage: throughput model|layers DIR" ;;
  esac
  [ -n "$out" ] || die "throughput: usage: throughput model|layers DIR"
  local text=${TEXT:-data/tinyshakespeare.txt}
  [ -f "$text" ] && text_arg=(--text "$text")
  mkdir -p "$out/parts"
  for m in $mixers; do
    dir=$out/parts/${m//,/+}; dir=${dir//:/__}  # prism,gdn: prism+gdn; prism:reduce-overhead: prism__reduce-overhead
    # shellcheck disable=SC2086  # BENCH_ARGS holds several arguments
    timeout "$limit" "$PYTHON" benchmarks/throughput.py ${BENCH_ARGS:-} "${rows[@]}" "$m" "${text_arg[@]}" \
      --out "$dir" > "$dir.log" 2>&1
    rc=$?
    echo "$m: rc=$rc$([ $rc = 124 ] && echo " (over $limit s)") log $dir.log"
    [ -f "$dir/results.json" ] && files+=("$dir/results.json")
  done
  [ ${#files[@]} -gt 0 ] || die "throughput: no mixer finished (logs in $out/parts)"
  "$PYTHON" benchmarks/throughput.py --out "$out" --merge "${files[@]}" > /dev/null && cat "$out/results.md"
}

cmd_pack() {
  local dest=${1:-} src=${2:-} part
  [ -n "$dest" ] && [ -d "$src" ] || die "pack: usage: pack DEST DIR [ITEM]... (DIR must exist)"
  shift 2
  [ $# -gt 0 ] || set -- .
  rm -rf "$dest" && mkdir -p "$dest"
  tar -C "$src" -cf - "$@" | xz -T2 -6 | split -b "$GPU_PART_SIZE" - "$dest/part." || die "pack: tar | xz failed"
  for part in "$dest"/part.*; do mkdir "$dest/${part##*.}" && mv "$part" "$dest/${part##*.}/"; done
  echo "packed into: $(cd "$dest" && ls -d -- */ | tr -d / | tr '\n' ' ')(carry each folder in its own call or together)"
}

main() {
  set -uo pipefail
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  JOBS=${GPU_JOBS:-/tmp/gpu_jobs} SITE=${GPU_SITE:-/tmp/site} STASH=${GPU_STASH:-/tmp/gpu_stash}
  CARRY=${GPU_CARRY:-$ROOT} PYTHON=${PYTHON:-python3}
  GPU_MAX_FILE_MB=${GPU_MAX_FILE_MB:-15} GPU_MAX_TOTAL_MB=${GPU_MAX_TOTAL_MB:-60} GPU_PART_SIZE=${GPU_PART_SIZE:-50M}
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}" TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/root/tcache}
  export TRITON_CACHE_AUTOTUNING=${TRITON_CACHE_AUTOTUNING:-1} PYTHONUNBUFFERED=1
  cd "$ROOT" || exit 2
  local cmd=${1:-help}
  [ $# -gt 0 ] && shift
  case $cmd in
    setup) cmd_setup "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status ;;
    wait) cmd_wait "$@" ;;
    throughput) cmd_throughput "$@" ;;
    pack) cmd_pack "$@" ;;
    help|-h|--help) usage ;;
    *) usage >&2; die "unknown subcommand '$cmd'" ;;
  esac
}

main "$@"; exit $?  # bash reads a script as it runs: main is parsed whole before a later call can replace the file
