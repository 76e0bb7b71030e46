"""Run integrity (issue 17): one process per run directory, finished runs stay finished, torn files, disk full,
orphan temp files, escaped reports, one-line errors. Probed with real processes, as a user would meet them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dldojo.cli import main
from dldojo.engine import checkpoint
from dldojo.engine.errors import DojoError, RunInterrupted
from dldojo.engine.launch import RunLock, run_experiment
from dldojo.engine.run import INTERRUPT_ENV

ROOT = Path(__file__).resolve().parents[1]
# the CLI with the docs example registered, as a separate process
CLI = [sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv.pop(1)); from dldojo.cli import main; "
       "sys.exit(main(sys.argv[1:]))", str(ROOT / "docs" / "example_gan.py")]


def _interrupted_run(stop: int = 120) -> Path:
    os.environ[INTERRUPT_ENV] = str(stop)
    try:
        with pytest.raises(RunInterrupted):
            run_experiment("example-gan", preset="smoke", seed=2, quiet=True, report=False,
                           checkpoint_every_seconds=1e9)
    finally:
        del os.environ[INTERRUPT_ENV]
    (run_dir,) = [p for p in Path(os.environ["DLDOJO_RUNS"], "example-gan").iterdir()
                  if not (p / "summary.json").exists()]
    return run_dir


def test_two_processes_started_together_get_two_run_directories(example_gan, tmp_path):
    out = tmp_path / "runs"
    cmd = CLI + ["run", "example-gan", "--preset", "smoke", "--quiet", "--json", "--no-report", "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-500:] for r in results]
    dirs = {json.loads(r[0].splitlines()[-1])["run_dir"] for r in results}
    assert len(dirs) == 3
    metrics = {json.dumps(json.loads(r[0].splitlines()[-1])["metrics"]) for r in results}
    assert len(metrics) == 1  # same seed, same metrics, each in its own directory


def test_a_second_process_cannot_resume_a_run_in_use(example_gan):
    run_dir = _interrupted_run()
    with RunLock(run_dir):  # this process holds the run, as a first `--resume` would
        proc = subprocess.run(CLI + ["run", "--resume", str(run_dir), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "in use by pid" in proc.stderr and "Traceback" not in proc.stderr
    resumed = run_experiment(resume=run_dir, quiet=True, report=False)  # free again: resumes normally
    assert resumed["metrics"]["eval_radius_error"] >= 0


def test_resuming_a_finished_run_does_not_train_it_again(example_gan, capsys):
    summary = run_experiment("example-gan", preset="smoke", quiet=True, report=False)
    run_dir = Path(summary["run_dir"])
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.is_file()}
    code = main(["run", "--resume", str(run_dir), "--quiet"])
    assert code == 0 and "already finished" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.is_file()} == before
    forced = run_experiment(resume=run_dir, quiet=True, report=False, force=True)
    assert forced["metrics"] == summary["metrics"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(x)["step"] for x in lines})  # trained once more, no step logged twice


def test_a_torn_log_line_does_not_stop_resume_or_report(example_gan):
    full = run_experiment("example-gan", preset="smoke", seed=2, quiet=True, report=False)
    run_dir = _interrupted_run()
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 130, "loss_d"')  # disk full in the middle of a line
    main(["report", str(run_dir)])
    resumed = run_experiment(resume=run_dir, quiet=True, report=False)
    assert resumed["metrics"] == full["metrics"]


def test_orphan_temp_files_are_removed_on_the_next_start(example_gan):
    run_dir = _interrupted_run()
    orphan = run_dir / "checkpoints" / ".last.pt.abc123.tmp"
    orphan.write_bytes(b"half")
    run_experiment(resume=run_dir, quiet=True, report=False)
    assert not orphan.exists()


def test_disk_full_during_a_checkpoint_keeps_the_old_one(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        path = mount / "checkpoints" / "last.pt"
        checkpoint.save_atomic({"w": torch.ones(1000)}, path)
        with pytest.raises(DojoError, match="disk full.*previous checkpoint is intact"):
            checkpoint.save_atomic({"w": torch.ones(200_000)}, path)  # 800 kB on a 256 kB disk
        assert torch.equal(checkpoint.load(path)["w"], torch.ones(1000))
        assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("argv,expected", [
    (["--seed", "-1"], "--seed must be between 0"),
    (["--seed", str(10**23)], "--seed must be between 0"),
    (["--threads", "-1"], "--threads must be between 1"),
])
def test_bad_seed_and_threads_are_one_line_errors(example_gan, argv, expected, capsys):
    code = main(["run", "example-gan", "--preset", "smoke", "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err


def test_out_that_is_a_file_or_read_only_is_a_one_line_error(example_gan, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["run", "example-gan", "--preset", "smoke", "--out", str(afile)]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_second_ctrl_c_exits_130(monkeypatch, capsys):
    import dldojo.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_list", interrupted)
    assert cli.main(["list"]) == 130


def test_report_escapes_everything(tmp_path):
    from dldojo.engine.report import build_report

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    evil = "<script>alert(1)</script>"
    (run_dir / "config.json").write_text(json.dumps(
        {"experiment": evil, "preset": evil, "seed": evil, "config": {"name": evil}}))
    page = build_report(run_dir).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_a_checkpoint_of_the_wrong_structure_is_a_one_line_error(example_gan):
    run_dir = _interrupted_run()
    checkpoint.save_atomic({"step": 3, "state": {}}, run_dir / "checkpoints" / "last.pt")
    with pytest.raises(DojoError, match="not a checkpoint of this dldojo version"):
        run_experiment(resume=run_dir, quiet=True, report=False)
    shutil.rmtree(run_dir)


def test_every_count_and_size_field_has_a_declared_upper_bound():
    """No experiment can forget: every int field (and every declared range) bounds what a config may allocate."""
    import dataclasses
    import typing

    from dldojo.engine import registry
    from dldojo.engine.config import build_config, field_range, field_types

    for name, exp in registry.load_all().items():
        types = field_types(exp.config_cls)
        for f in dataclasses.fields(exp.config_cls):
            tp = types[f.name]
            inner = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple and typing.get_args(tp) else tp
            if inner is int:
                assert field_range(exp.config_cls, f.name)[1] is not None, f"{name}.{f.name} has no upper bound"
        for preset, layer in exp.presets.items():
            build_config(exp.config_cls, layer, experiment=name)  # every preset is inside its ranges


def test_a_field_whose_doc_gives_zero_a_meaning_admits_zero():
    """A doc that says "0 = off" (or "=0 to skip") and a range starting at 1 contradict each other: the
    documented setting would be refused (norm-study's dropout_batch_size=0 was, for a while)."""
    import re

    from dldojo.engine import registry
    from dldojo.engine.config import field_docs, field_range

    zero = re.compile(r"(^|[\s(;])0 = |=0\b")
    for name, exp in registry.load_all().items():
        for field, doc in field_docs(exp.config_cls).items():
            if zero.search(doc):
                low = field_range(exp.config_cls, field)[0]
                assert low is None or low <= 0, f"{name}.{field}: its doc gives 0 a meaning, its range starts at {low}"


@pytest.mark.parametrize("sets,expected", [
    ("n_factors=1000000000", "n_factors: 1000000000; it must be >= 1 and <= 4096"),
    ("weight_decay=nan", "weight_decay: nan; it must be a finite number"),
    ("init_std=nan", "init_std: nan; it must be a finite number"),
    ("init_std=-1", "init_std: -1.0; it must be >= 0"),
    ("max_ratings=-1", "max_ratings: -1; it must be >= 0"),
    ("report_user=0", "report_user: 0; it must be >= 1 and <= 943"),
    ("report_user=99999", "report_user: 99999; it must be >= 1 and <= 943"),
])
def test_bad_config_values_are_refused_before_anything_is_created(sets, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLDOJO_RUNS", str(tmp_path))
    assert main(["run", "collab-bias", "--preset", "smoke", "--quiet", "--set", sets]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no run directory


def test_a_report_user_the_data_does_not_have_is_refused_before_training(synthetic_data, capsys):
    # the synthetic MovieLens has 40 users: user 500 is inside the range of the real data but not of this one
    assert main(["run", "collab-bias", "--preset", "smoke", "--quiet", "--no-report", "--set", "report_user=500"]) == 2
    assert "user id 500 is out of range" in capsys.readouterr().err
    assert not Path(os.environ["DLDOJO_RUNS"], "collab-bias").exists()  # nothing trained: no run directory left


def test_a_failed_allocation_is_a_one_line_error(monkeypatch, capsys):
    import dldojo.cli as cli

    def too_big(args):
        torch.empty(2**62, dtype=torch.uint8)

    monkeypatch.setattr(cli, "cmd_list", too_big)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory") and "Traceback" not in err


def test_an_unexpected_file_error_is_a_one_line_error(monkeypatch, capsys):
    import dldojo.cli as cli

    def missing(args):
        open("/nonexistent-dldojo/data_batch_1", "rb")

    monkeypatch.setattr(cli, "cmd_list", missing)
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No such file or directory: /nonexistent-dldojo/data_batch_1;") and "Traceback" not in err
