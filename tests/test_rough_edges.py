"""Rough edges a new user meets (issue 18, part 4): Ctrl-C with the output piped into a reader that went away,
bad numbers on the command line, honest RL summaries and progress bars, tables that fit the terminal, what
`data verify` checked, no empty run directories after a failed start, progress and `--json` in one stream."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dldojo.cli import main
from dldojo.data import store
from dldojo.engine import launch
from dldojo.engine.run import INTERRUPT_ENV, RunContext

DLDOJO = [sys.executable, "-m", "dldojo"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----- 1. Ctrl-C while the output goes into a pipe whose reader is gone (`2>&1 | tee log`, tee killed too) -----
@pytest.mark.parametrize("wiring", ["stdout and stderr into one pipe", "stdout into a pipe, stderr readable"])
def test_ctrl_c_after_the_reader_of_the_output_went_away(wiring, synthetic_data, monkeypatch, capsys):
    long_run = DLDOJO + ["run", "collab-bias", "--preset", "smoke", "--set", "epochs=500", "--set", "batch_size=64",
                         "--seed", "3", "--no-report"]
    together = wiring.startswith("stdout and stderr")
    if together:
        proc = subprocess.Popen(long_run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        status = proc.stdout
    else:
        reader, writer = os.pipe()
        os.close(reader)  # stdout's reader is gone before anything is written
        proc = subprocess.Popen(long_run, stdout=writer, stderr=subprocess.PIPE, text=True)
        os.close(writer)
        status = proc.stderr
    try:
        first = status.readline()  # the progress bar's first line: the training loop has started
        assert "collab-bias train" in first, first
        if together:
            status.close()  # the reader goes away (tee killed by the same Ctrl-C) ...
        proc.send_signal(signal.SIGINT)  # ... and then the Ctrl-C reaches dldojo
        rest = "" if together else proc.stderr.read()
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    if not together:  # stderr still works: it says how to continue
        assert "checkpoint saved. Continue with: dldojo run collab-bias --resume" in rest
        assert "Traceback" not in rest
    (run_dir,) = Path(os.environ["DLDOJO_RUNS"], "collab-bias").iterdir()
    saved_step = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert saved_step > 0

    # a later --resume continues from that checkpoint (stopped again one step later to stay fast)
    restored = []
    original_restore = RunContext.restore

    def spy(self, state):
        restored.append(original_restore(self, state))
        return restored[-1]

    monkeypatch.setattr(RunContext, "restore", spy)
    monkeypatch.setenv(INTERRUPT_ENV, str(saved_step + 1))
    code, _, err = run_cli(capsys, "run", "--resume", str(run_dir), "--quiet")
    assert code == 130 and f"--resume {run_dir}" in err
    assert restored == [saved_step]
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == saved_step + 1


# ----- 2. numbers that make no sense are one-line errors, exit 2, before anything is created -----
@pytest.mark.parametrize("argv,expected", [
    (["--seed", "-1"], "--seed must be between 0 and 4294967295, got -1."),
    (["--threads", "-3"], "--threads must be between 1 and 1024, got -3."),
    (["--threads", "0"], "--threads must be between 1 and 1024, got 0."),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a number of seconds > 0, got 0."),
    (["--checkpoint-every", "-5"], "--checkpoint-every must be a number of seconds > 0, got -5."),
    (["--checkpoint-every", "nan"], "--checkpoint-every must be a number of seconds > 0, got nan."),
])
def test_bad_numbers_are_one_line_errors(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLDOJO_RUNS", str(tmp_path))
    code, _, err = run_cli(capsys, "run", "collab-bias", "--preset", "smoke", "--quiet", *argv)
    assert code == 2 and err == f"error: {expected}\n"
    assert list(tmp_path.iterdir()) == []


# ----- 3. a3c-cartpole: no solve point for a run that did not solve; the bar ends where the loop ends -----
def test_a3c_stopped_by_its_time_budget_reports_no_solve_point_and_a_full_bar(synthetic_data, capsys):
    from dldojo.engine import registry

    assert registry.get("a3c-cartpole").metric == "eval_return_mean"  # a metric, present in every run
    code, out, err = run_cli(capsys, "run", "a3c-cartpole", "--preset", "smoke", "--json", "--no-report",
                             "--set", "compare_a2c=false", "--set", "total_steps=10000000", "--set", "max_seconds=1")
    assert code == 0
    summary = json.loads(out.splitlines()[-1])
    assert summary["metrics"]["train_solved"] == 0 and summary["metrics"]["train_steps"] < 10_000_000
    assert "train_steps_to_solve" not in summary["metrics"] and "time_to_solve_seconds" not in summary["timings"]
    bar = [line for line in err.splitlines() if line.startswith("a3c-cartpole train")]
    steps = int(summary["metrics"]["train_steps"])
    assert "100%" in bar[-1] and f"{steps}/{steps}" in bar[-1] and "time budget 1 s" in bar[-1], bar


def test_a3c_bar_counts_towards_the_step_where_the_time_budget_ends():
    from dldojo.rl.a3c import A3CConfig, last_step

    cfg = A3CConfig(total_steps=150_000, max_seconds=60.0)
    assert last_step(cfg, 10_000, 10.0) == 60_000  # 1,000 steps/s for 60 s
    assert last_step(cfg, 50_000, 10.0) == 150_000  # the step budget comes first
    assert last_step(cfg, 10_000, 0.0) == 150_000
    assert last_step(A3CConfig(total_steps=500, max_seconds=0.0), 100, 5.0) == 500  # no time budget


# ----- 4, 5. tables fit the terminal; `--wide` shows every cell whole; archs say how each one is trained -----
def test_tables_fit_the_terminal_and_wide_shows_everything(synthetic_data, monkeypatch, capsys):
    run_cli(capsys, "run", "collab-bias", "--preset", "smoke", "--quiet", "--no-report")
    monkeypatch.setenv("COLUMNS", "100")
    for command in (["list"], ["data", "list"], ["runs"], ["archs"]):
        code, out, _ = run_cli(capsys, *command)
        assert code == 0 and max(len(line) for line in out.splitlines()) <= 100, command
        code, wide, _ = run_cli(capsys, *command, "--wide")
        assert code == 0 and "…" not in wide, command
    assert max(len(line) for line in run_cli(capsys, "list", "--wide")[1].splitlines()) > 100
    rows = {line.split()[0]: line for line in wide.splitlines() if line}  # `archs --wide`
    assert rows["resnet20"].endswith("cifar10-resnet20")
    assert rows["airbench93"].endswith("cifar10-airbench93, fashion-cnn, mnist-cnn")
    assert rows["resnet56"].endswith("none: --set arch=resnet56")  # a model without an experiment of its own
    assert "dldojo run cifar10-resnet20 --set arch=resnet56" in wide


# ----- 6. data verify says what it checked -----
def test_data_verify_says_what_it_hashed(tmp_path, monkeypatch):
    import hashlib

    folder = tmp_path / "toy"
    (folder / "images" / "a").mkdir(parents=True)
    (folder / "labels.csv").write_bytes(b"x" * 1500)
    for i in range(3):
        (folder / "images" / "a" / f"{i}.png").write_bytes(b"y" * 1000)
    files = {"labels.csv": hashlib.sha256(b"x" * 1500).hexdigest()}
    dataset = store.Dataset(name="toy", description="", files=files, tree_sha256={"images": ""}, urls=("",),
                            license="")
    monkeypatch.setitem(store._DATASETS, "toy", dataset)
    text = store.what_was_checked(store.Status("toy", "ok", folder))
    assert text == ("1 file (labels.csv) and 3 files in 1 folder (images/), 4.5 kB hashed with sha256: all match "
                    "the registered checksums and the registered folder digests")
    monkeypatch.setitem(store._DATASETS, "toy", store.Dataset(name="toy", description="", files=files, urls=("",),
                                                              license=""))
    assert store.what_was_checked(store.Status("toy", "ok", folder)) == (
        "1 file (labels.csv), 1.5 kB hashed with sha256: it matches the registered checksums")


def test_data_verify_without_a_name_checks_every_dataset(synthetic_data, capsys):
    code, out, _ = run_cli(capsys, "data", "verify")
    assert code == 0
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(store.all_datasets())
    ml = next(line for line in lines if line.startswith("ml-100k:"))
    assert "fixture at" in ml and " files (" in ml and "hashed with sha256: all match its own FIXTURE.json" in ml
    code, out, _ = run_cli(capsys, "data", "verify", "flowers")
    assert code == 0 and re.search(r"— [1-9][\d,]* files \(daisy/", out) and "all match its own FIXTURE.json" in out


# ----- 7. a run that fails before it trained leaves no run directory behind -----
def test_a_run_that_fails_at_setup_removes_its_empty_run_directory(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    runs = tmp_path / "runs"
    monkeypatch.setenv("DLDOJO_DATA", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    monkeypatch.setenv("DLDOJO_RUNS", str(runs))
    code, _, err = run_cli(capsys, "run", "collab-bias", "--preset", "smoke", "--quiet")
    assert code == 2 and "dataset ml-100k not found" in err
    assert list(runs.iterdir()) == []  # neither the run directory nor an empty collab-bias/
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and out.startswith("no runs")
    code, _, err = run_cli(capsys, "runs", str(tmp_path / "nowhere" / "runs"))
    assert code == 2 and "does not exist" in err


def test_a_directory_that_holds_a_checkpoint_or_a_log_is_never_removed(tmp_path):
    for keep in ("checkpoints/last.pt", "metrics.jsonl", "summary.json"):
        run_dir = tmp_path / keep.replace("/", "-") / "20260101-000000-smoke-seed0"
        (run_dir / keep).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text("{}")
        (run_dir / keep).write_text("x")
        assert not launch.remove_if_empty(run_dir) and (run_dir / keep).exists()
    run_dir = tmp_path / "exp" / "20260101-000000-smoke-seed0"
    (run_dir / "figures").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    assert launch.remove_if_empty(run_dir) and not (tmp_path / "exp").exists()


# ----- 8, 9. progress as plain lines and the --json line on its own line, in one stream (2>&1) -----
def test_progress_lines_and_the_json_line_share_one_stream(synthetic_data):
    proc = subprocess.run(DLDOJO + ["run", "transformer", "--preset", "smoke", "--json", "--no-report"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    output = proc.stdout.decode()
    assert proc.returncode == 0, output[-2000:]
    assert "\r" not in output  # no carriage-return redraws in a log file
    summary = json.loads(output.splitlines()[-1])
    assert summary["experiment"] == "transformer" and "test_bleu" in summary["metrics"]
    lines = output.splitlines()
    # the test set's decoding has a bar of its own (beam search is the slow part), each bar a few lines
    beam = [line for line in lines if line.startswith("transformer test BLEU, beam 2")]
    assert beam and "100%" in beam[-1]
    assert len(lines) < 30, lines
