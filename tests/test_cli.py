"""CLI behaviour: help, listing, JSON output, clear errors with non-zero exit codes."""

from __future__ import annotations

import json

import pytest

from dldojo.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["list", "show", "run", "runs", "report", "data", "recommend",
                                     "translate", "play", "archs", "explain"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert len(capsys.readouterr().out) > 100


def test_list_shows_references(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "collab-bias" in out and "0.811" in out and "mf-sgd" in out and "ml-100k" in out


def test_unknown_experiment_suggests(capsys):
    code, _, err = run_cli(capsys, "run", "collab-bais")
    assert code == 2
    assert "unknown experiment 'collab-bais'" in err and "Did you mean 'collab-bias'" in err


def test_bad_set_key_lists_valid_keys(capsys):
    code, _, err = run_cli(capsys, "run", "collab-bias", "--set", "n_factor=10")
    assert code == 2
    assert "unknown config key 'n_factor'" in err and "Did you mean 'n_factors'" in err
    assert "weight_decay (float, default 0.1, 0..1000)" in err


@pytest.mark.parametrize("setting,expected", [
    ("n_factors=ten", "not a valid int"),
    ("split=u9", "choose one of random, u1"),
    ("lr=-1", "lr: -1.0; it must be >= 0"),
    ("weight_decay=nan", "it must be a finite number"),
    ("use_bias=maybe", "use true or false"),
    ("epochs", "expects key=value"),
])
def test_bad_set_values(setting, expected, capsys):
    name = "mf-sgd" if setting.startswith("use_bias") else "collab-bias"
    code, _, err = run_cli(capsys, "run", name, "--set", setting)
    assert code == 2 and expected in err


def test_run_json_last_line_and_runs_report_recommend(synthetic_data, capsys):
    code, out, _ = run_cli(capsys, "run", "collab-bias", "--preset", "smoke", "--quiet", "--json", "--seed", "5")
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"experiment", "preset", "seed", "metrics", "timings", "facts", "run_dir"}
    assert summary["timings"]["wall_seconds"] > 0 and summary["facts"]["threads"] >= 1
    assert summary["experiment"] == "collab-bias" and summary["seed"] == 5 and "test_mse" in summary["metrics"]
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and summary["run_dir"] in out and "finished" in out
    assert f"test_mse={summary['metrics']['test_mse']:.4f}" in out  # the experiment's primary metric
    code, out, _ = run_cli(capsys, "report", summary["run_dir"])
    assert code == 0 and out.strip().endswith("report.html")
    code, out, _ = run_cli(capsys, "recommend", summary["run_dir"], "--user", "3", "--n", "5", "--min-ratings", "1")
    assert code == 0 and len(out.strip().splitlines()) == 5 and "predicted" in out
    code, _, err = run_cli(capsys, "recommend", summary["run_dir"], "--user", "100000")
    assert code == 2 and "out of range" in err


def test_resume_rejects_set_and_non_run_dirs(synthetic_data, capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--resume", str(tmp_path))
    assert code == 2 and "not a dldojo run directory" in err


def test_data_commands(synthetic_data, capsys):
    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0 and "ml-100k" in out and "fixture" in out
    code, out, _ = run_cli(capsys, "data", "where", "ml-100k")
    assert code == 0 and out.strip().endswith("ml-100k")
    code, out, _ = run_cli(capsys, "data", "verify", "ml-100k")
    assert code == 0 and "synthetic" in out
    code, _, err = run_cli(capsys, "data", "verify", "mnistt")
    assert code == 2 and "unknown dataset" in err


def test_nan_exit_code(synthetic_data, capsys):
    code, _, err = run_cli(capsys, "run", "mf-sgd", "--preset", "smoke", "--quiet", "--set", "alpha=50")
    assert code == 3 and "loss became" in err
