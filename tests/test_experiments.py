"""The converged-ablation report's bookkeeping (experiments/converged_report.py): run discovery across resumed
run directories, loss means per checkpoint window, intervals over seeds and the table's finished-only rule."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "experiments" / "converged_report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("converged_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_dir(root: Path, name: str, total: int, steps: list[int], ticks: list[tuple[int, float]]) -> None:
    run = root / name
    for step in steps:
        (run / "checkpoints" / f"step-{step:06d}").mkdir(parents=True)
        (run / "checkpoints" / f"step-{step:06d}" / "checkpoint.json").write_text("{}")
    (run / "options.json").write_text(json.dumps({"total_iters": total}))
    (run / "stats.jsonl").write_text("".join(json.dumps({"step": s, "losses": {"G/latent_adv": v}}) + "\n"
                                             for s, v in ticks))


def test_discover_pools_resumed_runs_and_skips_other_folders(report, tmp_path: Path) -> None:
    _run_dir(tmp_path, "00000-smoothed-s0", 6, [2], [(1, 1.0), (2, 3.0), (3, 9.0)])  # killed after step 3
    _run_dir(tmp_path, "00003-smoothed-s0", 6, [4, 6], [(4, 5.0), (5, 6.0), (6, 8.0)])  # the resume
    _run_dir(tmp_path, "00001-baseline-s2", 6, [2], [(2, 1.0)])
    (tmp_path / "00002-notes").mkdir()
    (tmp_path / "00004-other-s1").mkdir()
    models = report.discover(tmp_path)
    assert sorted(models) == ["baseline-s2", "smoothed-s0"]
    smoothed = models["smoothed-s0"]
    assert (smoothed["variant"], smoothed["seed"], smoothed["total_iters"]) == ("smoothed", 0, 6)
    assert sorted(smoothed["checkpoints"]) == [2, 4, 6]
    assert report.mean_losses(smoothed["ticks"], 2, 4) == {"G/latent_adv": pytest.approx(7.0)}  # ticks 3, 4
    assert report.mean_losses(smoothed["ticks"], 0, 2) == {"G/latent_adv": pytest.approx(2.0)}


def test_final_only_evaluates_last_checkpoints_and_keeps_cached_ones(report, tmp_path: Path, monkeypatch) -> None:
    _run_dir(tmp_path / "runs", "00000-baseline-s1", 6, [2, 4, 6], [(2, 1.0), (4, 2.0), (6, 3.0)])
    cache = tmp_path / "cache"
    (cache / "baseline-s1").mkdir(parents=True)
    (cache / "baseline-s1" / f"step-000002.v{report.CACHE_VERSION}.json").write_text(json.dumps({"step": 2}))
    evaluated: list[tuple[str, bool]] = []

    def fake_evaluate(checkpoint, data, judge, lpips, num_pairs, final):
        evaluated.append((checkpoint.name, final))
        return {"domain_accuracy": 1.0, f"ps_inter_{report.STEPS}_paper": 0.5, "eval_seconds": 0.0}

    monkeypatch.setattr(report, "evaluate_checkpoint", fake_evaluate)
    models = report.discover(tmp_path / "runs")
    records = report.collect(models, tmp_path, None, None, cache, 1, final_only=True)
    assert evaluated == [("step-000006", True)]  # step 4 is neither cached nor final: left out, not evaluated
    assert [row["step"] for row in records["baseline-s1"]] == [2, 6]
    assert records["baseline-s1"][1]["losses"] == {"G/latent_adv": pytest.approx(2.5)}  # ticks 4 and 6


def test_interval_is_the_student_t_interval_over_seeds(report) -> None:
    # mean 2, sample std 1, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3) = 2.484
    assert report.interval([1.0, 2.0, 3.0], 3) == "2.000 [-0.484, 4.484] (n=3)"
    assert report.interval([0.5], 2) == "0.50 (n=1)"
    assert report.interval([], 2) == "-"


def test_table_counts_only_finished_models(report) -> None:
    models = {"baseline-s0": {"variant": "baseline", "total_iters": 10},
              "smoothed-s0": {"variant": "smoothed", "total_iters": 10},
              "smoothed-s1": {"variant": "smoothed", "total_iters": 10}}
    row = {"domain_accuracy_tasks": {"a2b": 1.0}}
    records = {"baseline-s0": [{"step": 10, "domain_accuracy": 0.5, **row}],
               "smoothed-s0": [{"step": 10, "domain_accuracy": 0.95, **row}],
               "smoothed-s1": [{"step": 4, "domain_accuracy": 0.2, **row}]}  # still training
    text = report.table(models, records)
    lines = text.splitlines()
    assert lines[0] == "| metric | baseline (StarGAN v2) | smoothed (official code's form) |"
    accuracy = next(line for line in lines if line.startswith("| translation domain accuracy"))
    assert accuracy == "| translation domain accuracy (judge) | 0.500 (n=1) | 0.950 (n=1) |"
    assert "| models at >= 90% domain accuracy | 0 of 1 | 1 of 1 |" in lines
    assert "| smoothed-s1 | 4 / 10 | 0.200 | a2b 1.00 |" in lines
    assert report.table(models, {"smoothed-s1": records["smoothed-s1"]}).startswith("(no model has finished")


def test_paired_table_differences_by_seed_with_student_t_intervals(report) -> None:
    models = {f"{v}-s{k}": {"variant": v, "seed": k, "total_iters": 10} for v in ("baseline", "smoothed")
              for k in range(3)}
    accuracy = {"baseline": [0.90, 0.80, 0.95], "smoothed": [0.95, 0.90, 0.95]}
    records = {name: [{"step": 10 if name != "smoothed-s2" else 8,  # smoothed-s2 still training: seed 2 unpaired
                       "domain_accuracy": accuracy[m["variant"]][m["seed"]]}] for name, m in models.items()}
    lines = report.paired_table(models, records).splitlines()
    assert lines[0] == "| metric | smoothed - baseline |"
    # differences 0.05 and 0.10: mean 0.075, half width t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.035355 / 1.4142
    half = 12.7062047 * (0.05 / 2**0.5) / 2**0.5
    row = next(line for line in lines if line.startswith("| translation domain accuracy"))
    assert row == f"| translation domain accuracy (judge) | 0.075 [{0.075 - half:.3f}, {0.075 + half:.3f}] (n=2) |"
    assert next(line for line in lines if line.startswith("| PS inter, official")) == "| PS inter, official | - |"
    assert report.paired_table(models, {"baseline-s0": records["baseline-s0"]}).startswith("(no seed has two")


def test_earlier_report_models_join_the_tables_and_fresh_records_win(report, tmp_path: Path) -> None:
    row = {"step": 10, "domain_accuracy_tasks": {"a2b": 1.0}}
    earlier = tmp_path / "converged.json"
    earlier.write_text(json.dumps({"models": {
        "baseline-s0": {"variant": "baseline", "seed": 0, "total_iters": 10,
                        "checkpoints": [{**row, "domain_accuracy": 0.80}]},
        "paper-s0": {"variant": "paper", "seed": 0, "total_iters": 10,
                     "checkpoints": [{**row, "domain_accuracy": 0.10}]}}}))
    models = {"paper-s0": {"variant": "paper", "seed": 0, "total_iters": 10}}
    records = {"paper-s0": [{**row, "domain_accuracy": 0.95}]}
    assert report.carry_over(earlier, models, records) == ["baseline-s0"]
    assert records["paper-s0"][0]["domain_accuracy"] == 0.95  # the fresh evaluation, not the recorded one
    assert models["baseline-s0"] == {"variant": "baseline", "seed": 0, "total_iters": 10,
                                     "carried_from": str(earlier)}
    lines = report.table(models, records).splitlines()
    assert lines[0] == "| metric | baseline (StarGAN v2) | smoothed (paper's form) |"
    assert lines[-1] == (f"Carried over as recorded in {earlier} (runs no longer on disk, not re-evaluated): "
                         "baseline-s0.")
    paired = report.paired_table(models, records).splitlines()
    assert paired[0] == "| metric | paper - baseline |"
    assert paired[2] == "| translation domain accuracy (judge) | 0.150 (n=1) |"


def test_matched_progress_table_averages_checkpoints_by_accuracy_band(report) -> None:
    models = {"baseline-s0": {"variant": "baseline"}, "paper-s0": {"variant": "paper"},
              "paper-s1": {"variant": "paper"}}
    key = "ps_inter_20_paper"
    records = {"baseline-s0": [{"domain_accuracy": 0.4, key: 0.8}, {"domain_accuracy": 0.95, key: 0.5}],
               "paper-s0": [{"domain_accuracy": 0.6, key: 0.7}, {"domain_accuracy": 0.65, key: 0.6}],
               "paper-s1": [{"domain_accuracy": 0.69, key: 0.2}, {"domain_accuracy": 1.0, key: None}]}
    lines = report.matched_progress_table(models, records).splitlines()
    assert lines[0] == ("| domain accuracy of the checkpoint (n: checkpoints) | baseline (StarGAN v2) "
                        "| smoothed (paper's form) |")
    assert lines[2] == "| 0.0 - 0.5 | 0.800 (n=1, 1 run) | - |"
    assert lines[3] == "| 0.5 - 0.7 | - | 0.500 (n=3, 2 runs) |"
    assert lines[4] == "| 0.7 - 0.9 | - | - |"
    assert lines[5] == "| 0.9 - 1.0 | 0.500 (n=1, 1 run) | - |"


def test_checkpoint_table_has_a_row_per_checkpoint_and_dashes_for_missing_metrics(report) -> None:
    records = {"smoothed-s0": [{"step": 2000, "domain_accuracy": 0.5, "fid_judge_latent": 12.25},
                               {"step": 4000, "domain_accuracy": 0.96}]}
    lines = report.checkpoint_table(records).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | step | domain acc. | FID (judge) |")
    assert lines[2].startswith("| smoothed-s0 | 2000 | 0.500 | 12.2 | - |")
    assert lines[3].startswith("| smoothed-s0 | 4000 | 0.960 | - |")


def test_queue_trains_unfinished_models_in_order_two_at_a_time(tmp_path: Path) -> None:
    """experiments/converged_queue.sh with a stub trainer: finished models skipped, plan order, <= JOBS at once,
    a model another process is training (its lock held) is neither started nor doubled."""
    import fcntl
    import os
    import subprocess
    import threading

    runs, log = tmp_path / "runs", tmp_path / "events.log"
    (runs / "00000-baseline-s0" / "checkpoints" / "step-000010").mkdir(parents=True)  # finished (ITERS=10)
    (runs / "00001-smoothed-s0" / "checkpoints" / "step-000004").mkdir(parents=True)  # stopped half way
    stub = tmp_path / "train.sh"
    stub.write_text('#!/usr/bin/env bash\necho "$(date +%s.%N) start $1 $2 $3" >> "$LOG"\nsleep 0.3\n'
                    'echo "$(date +%s.%N) end $1" >> "$LOG"\n')
    stub.chmod(0o755)
    lock = open(runs / ".smoothed-s1.lock", "w")  # what a training started by hand holds
    fcntl.flock(lock, fcntl.LOCK_EX)
    script = Path(__file__).resolve().parents[1] / "experiments" / "converged_queue.sh"
    env = {**os.environ, "RUNS": str(runs), "ITERS": "10", "JOBS": "2", "TRAIN": str(stub), "LOG": str(log)}
    queue = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True)
    guard = threading.Timer(60, queue.kill)  # never hang the suite
    guard.start()
    lines: list[str] = []
    try:
        assert queue.stdout is not None
        for line in queue.stdout:  # the hand-started training ends only once the queue has seen it running
            lines.append(line)
            if "smoothed-s1 is training in another process" in line:
                threading.Timer(0.5, lambda: (fcntl.flock(lock, fcntl.LOCK_UN), lock.close())).start()
        assert queue.wait(timeout=60) == 0
    finally:
        guard.cancel()
        queue.kill()
        queue.wait(timeout=10)
    assert lock.closed and "queue done" in lines[-1]
    order = [line.split()[-1] for line in lines if line.split()[1:2] == ["start"]]
    assert order == ["smoothed-s0", "baseline-s1", "baseline-s2", "smoothed-s2", "paper-s0", "paper-s1", "paper-s2"]
    events = [line.split() for line in log.read_text().splitlines()]
    assert sorted(e[2:] for e in events if e[1] == "start") == sorted(
        [["smoothed-s0", "0", "smoothed"], ["baseline-s1", "1", "baseline"], ["baseline-s2", "2", "baseline"],
         ["smoothed-s2", "2", "smoothed"], ["paper-s0", "0", "paper"], ["paper-s1", "1", "paper"],
         ["paper-s2", "2", "paper"]])
    active = peak = 0
    for _, kind, *_ in sorted(events, key=lambda e: float(e[0])):
        active += 1 if kind == "start" else -1
        peak = max(peak, active)
    assert peak <= 2


def _queue_order(tmp_path: Path, **env: str) -> list[str]:
    """Run experiments/converged_queue.sh one job at a time with a stub trainer; the trainings it started, in order."""
    import os
    import subprocess

    stub = tmp_path / "train.sh"
    stub.write_text('#!/usr/bin/env bash\necho "$1 $2 $3" >> "$LOG"\n')
    stub.chmod(0o755)
    log = tmp_path / "events.log"
    script = Path(__file__).resolve().parents[1] / "experiments" / "converged_queue.sh"
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "ITERS": "10", "JOBS": "1", "TRAIN": str(stub),
           "LOG": str(log), **env}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_queue_models_selects_a_subset_in_plan_order(tmp_path: Path) -> None:
    """MODELS restricts the queue to the named models (a short ablation of two variants), still in plan order."""
    order = _queue_order(tmp_path, MODELS="paper-s1 baseline-s2 smoothed-s")  # a name prefix selects nothing
    assert order == ["baseline-s2 2 baseline", "paper-s1 1 paper"]


def test_queue_seeds_sets_the_plan(tmp_path: Path) -> None:
    """SEEDS="3 4" adds seeds to an ablation: baseline and smoothed seed by seed, then the paper's form."""
    assert _queue_order(tmp_path, SEEDS="3 4") == ["baseline-s3 3 baseline", "smoothed-s3 3 smoothed",
                                                   "baseline-s4 4 baseline", "smoothed-s4 4 smoothed",
                                                   "paper-s3 3 paper", "paper-s4 4 paper"]


def test_a_model_already_training_is_not_started_twice(tmp_path: Path) -> None:
    import fcntl
    import os
    import subprocess

    runs = tmp_path / "runs"
    runs.mkdir()
    script = Path(__file__).resolve().parents[1] / "experiments" / "converged.sh"
    with open(runs / ".baseline-s1.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(["bash", str(script), "baseline-s1", "1", "baseline"], capture_output=True, text=True,
                              env={**os.environ, "RUNS": str(runs), "DATA": str(tmp_path / "none")}, timeout=60)
    assert done.returncode == 3 and "baseline-s1 is already training" in done.stderr
    assert sorted(p.name for p in runs.iterdir()) == [".baseline-s1.lock"]  # no run directory started
