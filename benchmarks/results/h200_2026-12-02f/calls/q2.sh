# Report the probing sweep's progress and bring back every run folder: finished ones without checkpoints,
# unfinished ones with last.ckpt.
source gpu_calls/env.sh
mark report
cat /root/probes*.log | grep -v "Warning\|warn" | grep -E "val/acc=|FAILED|Error|error" | tail -80 > $OUT/progress.txt
echo "--- steps of unfinished runs" >> $OUT/progress.txt
python3 - >> $OUT/progress.txt <<'PY'
import csv, glob, os
for d in sorted(glob.glob("/root/probes/runs/prism_probes/*/")):
    if os.path.exists(d + "summary.json"):
        continue
    steps = [int(r["step"]) for r in csv.DictReader(open(d + "metrics.csv")) if r.get("step")] if os.path.exists(d + "metrics.csv") else []
    print(os.path.basename(d.rstrip("/")), max(steps, default=0))
PY
uptime >> $OUT/progress.txt; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> $OUT/progress.txt
for f in /root/probes*.log; do tail -c 8000 $f > $OUT/$(basename $f .log)_tail.log; done
# finished runs without checkpoints; unfinished ones keep last.ckpt, so that they resume on another machine
python3 - <<'PY'
import os, tarfile
def keep(info):
    parts = info.name.split("/")
    if "checkpoints" in parts:
        run = "/root/" + "/".join(parts[:parts.index("checkpoints")])
        if os.path.exists(run + "/summary.json") or (info.isfile() and parts[-1] != "last.ckpt"):
            return None
    return info
with tarfile.open(os.environ["OUT"] + "/probes.tgz", "w:gz") as tar:
    tar.add("/root/probes", arcname="probes", filter=keep)
PY
mark tarred
