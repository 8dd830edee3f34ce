"""scripts/gpu_run.sh on the CPU, as on a GPU machine: setup unpacks a Triton cache carried in parts over two calls
and prints the versions; start runs jobs in sessions of their own that outlive the starting process; wait collects
their states, exit codes (a failing job's too), logs and results folders into $OUT; stop ends a job; throughput runs
each mixer in its own process and merges what finished."""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gpu_run(tmp_path, *args, check=True, **env):
    env = dict(os.environ, GPU_JOBS=str(tmp_path / "jobs"), GPU_SITE=str(tmp_path / "site"),
               GPU_STASH=str(tmp_path / "stash"), GPU_CARRY=str(tmp_path / "carry"), OUT=str(tmp_path / "out"),
               TRITON_CACHE_DIR=str(tmp_path / "tcache"), PYTHON=sys.executable, **env)
    proc = subprocess.run(["bash", "scripts/gpu_run.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 or not check, proc.stdout + proc.stderr
    return proc


def test_setup_unpacks_a_cache_carried_over_two_calls(tmp_path):
    cache = tmp_path / "cache_here"
    (cache / "ab12").mkdir(parents=True)
    (cache / "ab12" / "kernel.cubin").write_bytes(os.urandom(3000))  # incompressible: several 1 KiB parts
    packed = tmp_path / "packed" / ".tc"
    out = gpu_run(tmp_path, "pack", str(packed), str(cache), GPU_PART_SIZE="1K").stdout
    parts = sorted(p.name for p in packed.iterdir())
    assert len(parts) >= 3 and parts[0] == "aa" and (packed / "aa" / "part.aa").is_file(), (parts, out)

    shutil.copytree(packed / "aa", tmp_path / "carry" / ".tc" / "aa")  # the first call carries one part
    out = gpu_run(tmp_path, "setup").stdout
    assert "Triton cache: 1 part(s) so far (part.aa)" in out, out
    assert not (tmp_path / "tcache").exists()
    assert f"python {sys.version.split()[0]} torch " in out and "no nvidia-smi" in out, out

    shutil.rmtree(tmp_path / "carry")
    for name in parts[1:]:  # the next call carries the rest
        shutil.copytree(packed / name, tmp_path / "carry" / ".tc" / name)
    out = gpu_run(tmp_path, "setup").stdout
    assert f"Triton cache: {len(parts)} part(s) unpacked into {tmp_path / 'tcache'}" in out, out
    assert (tmp_path / "tcache" / "ab12" / "kernel.cubin").read_bytes() == \
        (cache / "ab12" / "kernel.cubin").read_bytes()
    assert "Triton cache: unpacked in an earlier call" in gpu_run(tmp_path, "setup").stdout
    assert "setup: cuda: not available to torch" in gpu_run(tmp_path, "wait", "0").stdout  # the summary has it


def test_jobs_outlive_start_and_wait_collects_them(tmp_path):
    results = tmp_path / "results"
    gpu_run(tmp_path, "start", "ok", "--results", str(results), "--", sys.executable, "-c",
            f"import pathlib; p = pathlib.Path({str(results)!r}); p.mkdir(); (p / 'r.json').write_text('[1]'); "
            "print('hello from ok')")
    gpu_run(tmp_path, "start", "bad", "--", sys.executable, "-c", "import sys; print('bad input'); sys.exit(3)")
    gpu_run(tmp_path, "start", "slow", "--", "sleep", "60")
    assert "slow             running" in gpu_run(tmp_path, "status").stdout  # start returned, the job runs on

    summary = gpu_run(tmp_path, "wait", "60", "ok", "bad").stdout  # returns once ok and bad ended
    assert summary == (tmp_path / "out" / "summary.txt").read_text()
    states = dict(re.findall(r"^(\S+) +(rc=\d+|running|lost) ", summary, flags=re.M))
    assert states == {"ok": "rc=0", "bad": "rc=3", "slow": "running"}, summary
    assert "hello from ok" in summary and "bad input" in summary
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bad.tgz", "ok.tgz", "slow.tgz", "summary.txt"]
    with tarfile.open(tmp_path / "out" / "ok.tgz") as tar:
        assert tar.extractfile("ok/log").read().decode() == "hello from ok\n"
        assert tar.extractfile("ok/rc").read() == b"0\n"
        assert json.loads(tar.extractfile("results/r.json").read()) == [1]
    with tarfile.open(tmp_path / "out" / "bad.tgz") as tar:
        assert tar.extractfile("bad/rc").read() == b"3\n"

    gpu_run(tmp_path, "stop", "slow")
    assert "slow             rc=143" in gpu_run(tmp_path, "status").stdout
    again = gpu_run(tmp_path, "start", "ok", "--", "true", check=False)  # a finished job's name can be reused
    assert again.returncode == 0 and "started ok" in again.stdout
    bad = gpu_run(tmp_path, "start", "no/name", "--", "true", check=False)
    assert bad.returncode == 2 and "NAME must be letters, digits" in bad.stderr


def test_wait_leaves_results_out_beyond_what_comes_back(tmp_path):
    big = tmp_path / "big"
    gpu_run(tmp_path, "start", "big", "--results", str(big), "--", sys.executable, "-c",
            f"import os, pathlib; p = pathlib.Path({str(big)!r}); p.mkdir(); "
            "(p / 'x.bin').write_bytes(os.urandom(2 * 1024 * 1024))")
    summary = gpu_run(tmp_path, "wait", "60", GPU_MAX_FILE_MB="1").stdout
    assert "big.tgz: results left out (2 MiB is over what comes back)" in summary, summary
    with tarfile.open(tmp_path / "out" / "big.tgz") as tar:
        assert sorted(tar.getnames()) == ["big", "big/cmd", "big/end", "big/log", "big/pid", "big/rc", "big/results",
                                          "big/start"]


def test_wait_drops_finished_runs_checkpoints_first(tmp_path):
    # a sweep's folder: one finished run (summary.json) and one still going, each with a checkpoint; only the
    # finished run's checkpoint may go when the archive is too big: the other is what a resumed sweep needs
    sweep = tmp_path / "sweep"
    script = (f"import os, pathlib, json; p = pathlib.Path({str(sweep)!r}); "
              "a = p / 'runs' / 'done'; b = p / 'runs' / 'going'; "
              "[(d / 'checkpoints').mkdir(parents=True) for d in (a, b)]; "
              "(a / 'summary.json').write_text(json.dumps({'val/acc': 0.9, 'status': 'finished'}, indent=2)); "
              "(a / 'checkpoints' / 'last.ckpt').write_bytes(os.urandom(2 * 1024 * 1024)); "
              "(b / 'run.json').write_text('{}'); (b / 'checkpoints' / 'last.ckpt').write_bytes(os.urandom(4096))")
    gpu_run(tmp_path, "start", "job", "--results", str(sweep), "--", sys.executable, "-c", script)
    summary = gpu_run(tmp_path, "wait", "60", GPU_MAX_FILE_MB="1").stdout
    assert "job.tgz: the checkpoints of 1 finished run file(s) left out" in summary, summary
    with tarfile.open(tmp_path / "out" / "job.tgz") as tar:
        names = set(tar.getnames())
    assert {"sweep/runs/done/summary.json", "sweep/runs/going/run.json",
            "sweep/runs/going/checkpoints/last.ckpt", "job/log"} <= names, sorted(names)
    assert "sweep/runs/done/checkpoints/last.ckpt" not in names


def test_throughput_runs_each_mixer_apart_and_merges_what_finished(tmp_path):
    proc = gpu_run(tmp_path, "throughput", "layers", str(tmp_path / "bench"), MIXERS="attention no_such_mixer",
                   BENCH_ARGS="--tiny", LIMIT="120")
    assert "attention: rc=0" in proc.stdout and "no_such_mixer: rc=0" in proc.stdout, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["layers"]
    assert {r["mixer"] for r in rows if "error" not in r} == {"attention"}
    assert {r["mixer"] for r in rows if "error" in r} == {"no_such_mixer"}
    assert (tmp_path / "bench" / "results.md").read_text() in proc.stdout

    late = gpu_run(tmp_path, "throughput", "model", str(tmp_path / "late"), MIXERS="attention", LIMIT="1",
                   check=False)  # a mixer over its time limit is stopped
    assert "attention: rc=124 (over 1 s)" in late.stdout and late.returncode == 2, late.stdout + late.stderr
    assert "no mixer finished" in late.stderr


def test_throughput_model_entries_name_their_mode(tmp_path):
    # a KEY:MODE entry runs in its own process (folder KEY__MODE) with that compile mode
    proc = gpu_run(tmp_path, "throughput", "model", str(tmp_path / "bench"), MIXERS="attention:none",
                   BENCH_ARGS="--tiny --model-steps 3", LIMIT="300")
    assert "attention:none: rc=0" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "bench" / "parts" / "attention__none" / "results.json").is_file()
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["model"]
    assert [(r["mixer"], r["compile"], len(r["losses"])) for r in rows] == [("attention", "none", 3)]
