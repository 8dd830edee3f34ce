#!/usr/bin/env bash
# The PRISM paper's probing table with its authors' protocol (docs/probing.md): every task of experiment
# probes_paper x the mixers x 3 seeds through compare.py, JOBS runs at once (the models are tiny: one GPU trains
# many side by side), then the table (val/acc mean ± std over seeds, by task). Running the same command again
# resumes: finished runs are kept, interrupted ones go on from their last.ckpt (written every 1000 steps).
#   bash scripts/probes_paper_table.sh OUT [overrides...]
# Environment: TASKS (default all nine), MIXERS (default: attention linear_attention prism prism_l1 gdn gla mamba2
# ttt_mlp), SEEDS (0 1 2), JOBS (8), PYTHON (python3).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
out=$1; shift
tasks=${TASKS:-mqar poly_recall variable_tracking parity_check modulo_add palindrome mux_logic local_xor silent_gate}
# one head everywhere: the experiment sets it per mixer, but mixer=attention's group file sets 2 heads after it
declare -A pattern=([attention]="attention:attention model.mixers.attention.num_heads=1"
                    [linear_attention]=linear_attention [prism]=prism [prism_l1]=prism_l1 [gdn]=gdn [gla]=gla
                    [mamba2]=mamba2 [ttt_mlp]=ttt_mlp)
patterns=()
for m in ${MIXERS:-attention linear_attention prism prism_l1 gdn gla mamba2 ttt_mlp}; do
  [ -n "${pattern[$m]:-}" ] || { echo "probes_paper_table: unknown mixer $m (one of: ${!pattern[*]})" >&2; exit 2; }
  patterns+=("${pattern[$m]}")
done
vary=$(printf 'probes_paper/%s,' $tasks)
exec "${PYTHON:-python3}" compare.py experiment=probes_paper --vary "experiment=${vary%,}" --patterns "${patterns[@]}" \
  --seeds ${SEEDS:-0 1 2} --jobs "${JOBS:-8}" --out "$out" -- "$@"
