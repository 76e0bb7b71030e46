"""The Python API (`import dldojo`): the CLI's checks and messages, the caller's state left alone, results that
reload, family actions, and the notebook views. Real data, smoke presets, the smallest experiments."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import dldojo
from dldojo import DojoError
from dldojo.cli import main as cli_main

REAL_DATA = os.environ.get("DLDOJO_DATA", "")

ROOT = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.skipif(not REAL_DATA, reason="set DLDOJO_DATA to the real datasets to run this test")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """One runs folder for the module (offline, real data): the fast runs below are shared between tests."""
    with pytest.MonkeyPatch.context() as patch:
        runs = tmp_path_factory.mktemp("api-runs")
        patch.setenv("DLDOJO_RUNS", str(runs))
        patch.setenv("DLDOJO_OFFLINE", "1")
        yield runs


@pytest.fixture(scope="module")
def mf(runs_dir):
    if not REAL_DATA:
        pytest.skip("set DLDOJO_DATA to the real datasets to run this test")
    return dldojo.run("mf-sgd", preset="smoke", quiet=True, n_factors=7, alpha=0.004)


def cli_error(capsys, *argv: str) -> str:
    """The message `dldojo` prints for a rejected command line (without the 'error: ' prefix and the indent it
    gives the lines after the first)."""
    assert cli_main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    return err[len("error: "):].rstrip("\n").replace("\n  ", "\n")


# ----- importing and listing -----


def test_import_is_cheap_and_exports_the_api():
    code = ("import sys, dldojo; print('torch' in sys.modules, 'matplotlib' in sys.modules, "
            "sorted(set(dldojo.__all__) - set(dir(dldojo))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "[]"]
    assert issubclass(dldojo.DojoError, Exception) and dldojo.DojoError is DojoError


def test_experiments_table_and_show():
    rows = dldojo.experiments()
    mf = next(r for r in rows if r["name"] == "mf-sgd")
    assert mf["family"] == "recsys" and mf["datasets"] == ["ml-100k"] and mf["metric"] == "test_rmse"
    assert mf["direction"] == "min" and mf["references"][0]["value"] == 0.93
    assert "<table>" in rows._repr_html_() and "mf-sgd" in repr(rows)
    assert {r["family"] for r in dldojo.experiments(family="rl")} == {"rl"}
    with pytest.raises(DojoError, match="unknown family 'recsis'. Did you mean 'recsys'"):
        dldojo.experiments(family="recsis")

    info = dldojo.show("mf-sgd")
    field = next(f for f in info.config if f["name"] == "n_factors")
    assert field["type"] == "int" and field["default"] == 50 and field["range"] == "1..4096" and field["doc"]
    assert info.presets["smoke"]["epochs"] == 2 and info.actions == ("recommend",)
    assert "n_factors (int, default 50, 1..4096)" in repr(info) and "0.93" in info._repr_html_()


def test_unknown_names_and_bad_values_give_the_cli_message(capsys):
    """Every check is the CLI's, with its message (the CLI prints it after 'error: ')."""
    cases = [
        (("collab-bais",), {}, ("run", "collab-bais")),
        (("mf-sgd",), {"preset": "tiny"}, None),
        (("mf-sgd",), {"n_factorz": 3}, ("run", "mf-sgd", "--set", "n_factorz=3")),
        (("mf-sgd",), {"n_factors": "abc"}, ("run", "mf-sgd", "--set", "n_factors=abc")),
        (("mf-sgd",), {"n_factors": 2.5}, ("run", "mf-sgd", "--set", "n_factors=2.5")),
        (("mf-sgd",), {"n_factors": 10**9}, ("run", "mf-sgd", "--set", "n_factors=1000000000")),
        (("mf-sgd",), {"alpha": float("nan")}, ("run", "mf-sgd", "--set", "alpha=nan")),
        (("mf-sgd",), {"split": "u9"}, ("run", "mf-sgd", "--set", "split=u9")),
        (("mf-sgd",), {"use_bias": "maybe"}, ("run", "mf-sgd", "--set", "use_bias=maybe")),
        (("mf-sgd",), {"threads": 0}, ("run", "mf-sgd", "--threads", "0")),
    ]
    for args, kwargs, argv in cases:
        with pytest.raises(DojoError) as caught:
            dldojo.run(*args, **kwargs)
        if argv is None:  # the CLI's argparse rejects it before dldojo sees it
            assert str(caught.value) == "unknown preset 'tiny': choose one of smoke, quick, full."
            continue
        assert str(caught.value) == cli_error(capsys, *argv), argv
    with pytest.raises(DojoError, match="seed must be an integer"):
        dldojo.run("mf-sgd", seed="1")
    with pytest.raises(DojoError, match="unknown experiment 'mf-sdg'. Did you mean 'mf-sgd'"):
        dldojo.show("mf-sdg")


def test_no_config_field_is_named_like_a_run_parameter():
    """Overrides are keyword arguments of `dldojo.run`, so no config field may share a name with its parameters."""
    import dataclasses

    from dldojo.api import RUN_PARAMETERS
    from dldojo.engine import registry

    for exp in registry.load_all().values():
        clash = {f.name for f in dataclasses.fields(exp.config_cls)} & set(RUN_PARAMETERS)
        assert not clash, f"{exp.name}: config fields {clash} cannot be passed to dldojo.run"


def test_api_names_no_family():
    text = (ROOT / "src/dldojo/api.py").read_text()
    assert not [f for f in ("recsys", "rl", "text", "vision") if f"dldojo.{f}" in text]


# ----- running -----


@needs_data
def test_run_applies_overrides_and_restores_threads_and_rngs(mf, runs_dir):
    assert (mf.config.n_factors, mf.config.alpha, mf.config.epochs) == (7, 0.004, 2)  # preset + overrides
    assert mf.facts["threads"] == 1  # mf-sgd's own default
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(3)
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    before = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        r = dldojo.run("mf-sgd", preset="smoke", quiet=True, threads=2, epochs=1)
        assert r.facts["threads"] == 2 and r.config.epochs == 1
        assert torch.get_num_threads() == 3
        assert random.getstate() == before[0]
        state, saved = np.random.get_state(), before[1]
        assert state[0] == saved[0] and np.array_equal(state[1], saved[1]) and state[2:] == saved[2:]
        assert torch.equal(torch.get_rng_state(), before[2])
    finally:
        torch.set_num_threads(caller_threads)


@needs_data
def test_same_seed_twice_in_one_process_gives_the_same_metrics(runs_dir):
    first = dldojo.run("collab-bias", preset="smoke", seed=3, quiet=True)
    np.random.seed(99)  # the caller's generators must not matter
    second = dldojo.run("collab-bias", preset="smoke", seed=3, quiet=True)
    assert first.run_dir != second.run_dir
    assert first.metrics == second.metrics
    seeded = [k for k in first.history if not any(t in k for t in ("wall", "seconds", "per_second"))]
    assert seeded and all(first.history[k] == second.history[k] for k in seeded)


@needs_data
def test_load_round_trip_history_figures_and_runs(mf):
    again = dldojo.load(mf.run_dir)
    assert (again.metrics, again.config, again.preset, again.seed) == (mf.metrics, mf.config, "smoke", 0)
    assert again.timings == mf.timings and again.facts == mf.facts
    assert again.history == mf.history and len(mf.history["step"]) == len(mf.history.records) > 0
    steps, rmse = mf.history.series("test_rmse")
    assert rmse[-1] == pytest.approx(mf.metrics["test_rmse"]) and steps == sorted(steps)
    with pytest.raises(DojoError, match="no logged series 'test_rmze'. Did you mean 'test_rmse'"):
        mf.history.series("test_rmze")
    assert mf.figures and all(p.suffix == ".png" and p.exists() for p in mf.figures)
    assert mf.report_path == mf.run_dir / "report.html" and mf.report_path.exists()
    listed = dldojo.runs("mf-sgd")
    assert str(mf.run_dir) in {r["run_dir"] for r in listed} and all(r["experiment"] == "mf-sgd" for r in listed)
    assert "<table>" in listed._repr_html_()
    with pytest.raises(DojoError, match="Did you mean 'mf-sgd'"):
        dldojo.runs("mf-sdg")
    with pytest.raises(DojoError, match="not a dldojo run directory"):
        dldojo.load(mf.run_dir.parent)


@needs_data
def test_recommend_action_matches_the_command_and_other_actions_are_refused(mf):
    from dldojo.recsys.common import recommend

    assert mf.actions == ("recommend",) and "recommend" in dir(mf)
    top = mf.recommend(user=42, n=5)
    assert [(r["title"], r["predicted"]) for r in top] == recommend(mf.run_dir, 42, 5)  # `dldojo recommend`
    assert [r["rank"] for r in top] == [1, 2, 3, 4, 5] and "<table>" in top._repr_html_()
    with pytest.raises(DojoError, match=r"translate is an action of the text family; this mf-sgd run \(recsys\) "
                                        r"offers: recommend\."):
        mf.translate("hello")
    assert not hasattr(mf, "explain") and hasattr(mf, "recommend")
    with pytest.raises(AttributeError, match="no attribute 'recomend'"):
        mf.recomend(user=1)
    with pytest.raises(DojoError, match="user id 944 is out of range"):
        mf.recommend(user=944)


@needs_data
def test_html_view_shows_metrics_references_and_figures(mf):
    page = mf._repr_html_()
    assert "test_rmse" in page and "0.93" in page and "published matrix-factorisation baselines" in page
    assert page.count("data:image/png;base64,") >= 2  # training curves + the factor map
    assert "mf-sgd [smoke, seed 0]: test_rmse = " in repr(mf)
    japanese = mf.html(lang="ja")
    assert "テスト" in japanese._repr_html_() and str(japanese) == japanese._repr_html_()
    assert len(repr(japanese)) < 200


def test_rl_actions(runs_dir):
    r = dldojo.run("q-table-cartpole", preset="smoke", quiet=True)
    assert r.actions == ("play", "episode", "evaluate")
    episode = r.episode(seed=4)
    returns = r.evaluate(episodes=3, seed=4)
    assert len(returns) == 3 and episode.episode_return == returns[0] == episode.length
    assert "image/gif" in episode._repr_html_()
    with pytest.raises(DojoError, match="CartPole agent, not a board-game player"):
        r.play(moves=[1, 2, 3])
    with pytest.raises(DojoError, match="recommend is an action of the recsys family"):
        r.recommend(user=1)


@needs_data
def test_translate_and_explain_actions(runs_dir):
    from dldojo.text.cli import load_translator, translate_line

    text = dldojo.run("seq2seq-gru", preset="smoke", quiet=True)
    sentence = "i am a student ."
    translator = load_translator(text.run_dir)
    assert text.translate(sentence) == translate_line(translator, sentence, translator.beam_width,
                                                      translator.length_penalty)[0]  # `dldojo translate`
    assert text.translate([sentence, "you are tall ."], beam=1)[0] == text.translate(sentence, beam=1)
    with pytest.raises(DojoError, match="empty input"):
        text.translate(" ")

    vision = dldojo.run("cifar10-plain_cnn", preset="smoke", quiet=True)
    explained = vision.explain(index=3, method="gradcam")
    assert explained.true_class and len(explained.top) >= 3 and explained.paths[0].exists()
    assert "data:image/png;base64," in explained._repr_html_()
    with pytest.raises(DojoError, match="index must be an integer in 0..9999"):
        vision.explain(index=10**6, method="gradcam")


def test_dojo_errors_show_as_one_line_in_ipython():
    """In an IPython shell, `import dldojo` installs a handler: the message, no traceback."""
    pytest.importorskip("IPython")
    code = textwrap.dedent("""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        result = shell.run_cell("import dldojo\\ndldojo.experiments(family='recsis')")
        print("RAISED", type(result.error_in_exec).__name__)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert "DojoError: unknown family 'recsis'. Did you mean 'recsys'?" in out, out
    assert "Traceback" not in out and "RAISED DojoError" in out, out


def test_an_interrupted_run_resumes_to_the_same_metrics(runs_dir, monkeypatch):
    from dldojo.engine.errors import RunInterrupted
    from dldojo.engine.run import INTERRUPT_ENV

    full = dldojo.run("q-table-cartpole", preset="smoke", seed=2, quiet=True)
    before = set((runs_dir / "q-table-cartpole").iterdir())
    monkeypatch.setenv(INTERRUPT_ENV, "10")  # a real SIGINT at episode 10: checkpoint, then RunInterrupted
    with pytest.raises(RunInterrupted, match="checkpoint saved"):
        dldojo.run("q-table-cartpole", preset="smoke", seed=2, quiet=True)
    monkeypatch.delenv(INTERRUPT_ENV)
    (interrupted,) = set((runs_dir / "q-table-cartpole").iterdir()) - before
    resumed = dldojo.resume(interrupted, quiet=True)
    assert resumed.run_dir == interrupted and resumed.metrics == full.metrics
