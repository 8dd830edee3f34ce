# Where a GPU mqar_sweep run's time goes: attention, 300 steps and one full validation, under cProfile, then plain.
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl || exit 3
A="experiment=mqar_sweep trainer.max_steps=300 trainer.val_check_interval=300 logging.wandb=false trainer.enable_progress_bar=false trainer.log_every_n_steps=25"
/usr/bin/time -v timeout 110 python3 -m cProfile -o $OUT/prof_attention.out train.py $A logging.name=prof > $OUT/prof.log 2>&1; echo "prof rc=$?"
/usr/bin/time -v timeout 90 python3 train.py $A logging.name=plain > $OUT/plain.log 2>&1; echo "plain rc=$?"; cp runs/*/prof/metrics.csv $OUT/prof_metrics.csv; cp runs/*/plain/metrics.csv $OUT/plain_metrics.csv
nproc; python3 -c "import os;print(os.cpu_count())"; lscpu | grep -i "model name"
