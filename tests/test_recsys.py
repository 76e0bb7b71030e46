"""Recommender maths: the curriculum's worked example exactly, models vs brute-force NumPy, reloading a finished
run for `dldojo recommend`, real-data quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dldojo.recsys.collab import CollabNN, DotProduct, DotProductBias
from dldojo.recsys.mf_sgd import predict_ratings, sgd_epoch_on_matrix, sgd_update

nan = np.nan
R = np.array([[5, nan, 8, 3], [7, 7, nan, 4], [nan, 6, 7, 7], [10, nan, nan, nan]])
P0 = np.array([[1.4, 0.4, -1.2], [1.3, 1.5, -0.3], [0.8, 0.1, 0.6], [-0.7, 0.5, 1.1]])
Q0_COLUMNS = np.array([[0.6, -1.1, 1], [0.5, -0.4, 0.3], [1.3, 0.7, 0.5], [-0.5, 1.3, -0.1]])  # M1..M4


def test_worked_example_u1_m3():
    P, Q = P0.copy(), Q0_COLUMNS.copy()
    r_hat, squared_error = sgd_update(P, Q, u=0, i=2, r=8.0, alpha=0.1)
    assert r_hat == pytest.approx(1.5, abs=1e-12)  # 1.4·1.3 + 0.4·0.7 − 1.2·0.5
    assert squared_error == pytest.approx(42.25, abs=1e-12)  # (8 − 1.5)²
    # p ← p + 2α(r − r̂)q = 1.4 + 2·0.1·6.5·1.3 = 3.09.  (The course material prints 1.6 for this
    # step: an arithmetic error; 3.09 is the correct value.)
    assert P[0, 0] == pytest.approx(3.09, abs=1e-12)
    np.testing.assert_allclose(P[0], P0[0] + 2 * 0.1 * 6.5 * Q0_COLUMNS[2], atol=1e-12)
    # q is updated with the already-updated p
    np.testing.assert_allclose(Q[2], Q0_COLUMNS[2] + 2 * 0.1 * 6.5 * P[0], atol=1e-12)
    # nothing else moved
    np.testing.assert_array_equal(np.delete(P, 0, 0), np.delete(P0, 0, 0))
    np.testing.assert_array_equal(np.delete(Q, 2, 0), np.delete(Q0_COLUMNS, 2, 0))


def test_matrix_epoch_skips_nan_and_matches_a_hand_loop():
    P, Q = P0.copy(), Q0_COLUMNS.copy()
    sse = sgd_epoch_on_matrix(R, P, Q, alpha=0.01, lam=0.05)
    P_ref, Q_ref, sse_ref, updates = P0.copy(), Q0_COLUMNS.copy(), 0.0, 0
    for u in range(4):
        for i in range(4):
            if np.isnan(R[u, i]):
                continue
            e = R[u, i] - Q_ref[i] @ P_ref[u]
            sse_ref += e * e
            P_ref[u] = P_ref[u] + 2 * 0.01 * (e * Q_ref[i] - 0.05 * P_ref[u])
            Q_ref[i] = Q_ref[i] + 2 * 0.01 * (e * P_ref[u] - 0.05 * Q_ref[i])
            updates += 1
    assert updates == 10
    assert np.isfinite(P).all() and sse == pytest.approx(sse_ref, rel=1e-12)
    np.testing.assert_allclose(P, P_ref, atol=1e-12)
    np.testing.assert_allclose(Q, Q_ref, atol=1e-12)


def test_mf_prediction_with_bias_is_brute_force():
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(5, 3)), rng.normal(size=(7, 3))
    bu, bi, mu = rng.normal(size=5), rng.normal(size=7), 3.5
    full = P @ Q.T + mu + bu[:, None] + bi[None, :]
    users, items = rng.integers(0, 5, 20), rng.integers(0, 7, 20)
    np.testing.assert_allclose(predict_ratings(P, Q, users, items, (bu, bi, mu)), full[users, items], atol=1e-12)


def test_torch_models_equal_brute_force_numpy():
    torch.manual_seed(0)
    users, items = torch.tensor([0, 1, 2, 2, 4]), torch.tensor([3, 0, 5, 1, 6])
    dot = DotProduct(5, 7, 4, init_std=1.0)
    P, Q = dot.user_factors.weight.detach().numpy(), dot.item_factors.weight.detach().numpy()
    np.testing.assert_allclose(dot(users, items).detach().numpy(), (P @ Q.T)[users, items], rtol=1e-5)

    biased = DotProductBias(5, 7, 4, init_std=1.0, y_range=(0.0, 5.5))
    torch.nn.init.normal_(biased.user_bias.weight)
    torch.nn.init.normal_(biased.item_bias.weight)
    P, Q = biased.user_factors.weight.detach().numpy(), biased.item_factors.weight.detach().numpy()
    bu, bi = biased.user_bias.weight.detach().numpy()[:, 0], biased.item_bias.weight.detach().numpy()[:, 0]
    score = P @ Q.T + bu[:, None] + bi[None, :]
    expected = 5.5 / (1 + np.exp(-score))
    np.testing.assert_allclose(biased(users, items).detach().numpy(), expected[users, items], rtol=1e-5)

    mlp = CollabNN(5, 7, 4, hidden=8, dropout=0.0, init_std=1.0).eval()
    W1, b1 = mlp.mlp[0].weight.detach().numpy(), mlp.mlp[0].bias.detach().numpy()
    W2, b2 = mlp.mlp[3].weight.detach().numpy(), mlp.mlp[3].bias.detach().numpy()
    x = np.concatenate([mlp.user_factors.weight.detach().numpy()[users], mlp.item_factors.weight.detach().numpy()[items]], 1)
    out = 5.5 / (1 + np.exp(-(np.maximum(x @ W1.T + b1, 0) @ W2.T + b2)[:, 0]))
    np.testing.assert_allclose(mlp(users, items).detach().numpy(), out, rtol=1e-5)


def test_collab_bias_quick_on_real_data(real_data):
    from dldojo.engine.launch import run_experiment

    summary = run_experiment("collab-bias", preset="quick", quiet=True, report=False)
    assert summary["metrics"]["test_mse"] < 0.90, summary["metrics"]


def test_mf_sgd_learns_on_a_real_slice(real_data):
    from dldojo.engine.launch import run_experiment

    summary = run_experiment("mf-sgd", preset="smoke", sets=["max_ratings=20000", "epochs=3"], quiet=True,
                             report=False)
    assert summary["metrics"]["test_rmse"] < 1.05, summary["metrics"]  # the global mean alone gives ~1.13


def test_autorec_prediction_is_brute_force():
    from types import SimpleNamespace

    from dldojo.recsys.autorec import ItemAutoRec, make_predictor, rating_matrix

    torch.manual_seed(0)
    train = SimpleNamespace(user=np.array([0, 1, 2, 0]), item=np.array([0, 0, 1, 2]),
                            rating=np.array([5.0, 3.0, 4.0, 1.0], dtype=np.float32))
    R, M = rating_matrix(train, n_items=4, n_users=3)  # movie 3 has no ratings
    assert R[0, 0] == 5 and R[2, 0] == 1 and M.sum() == 4
    model = ItemAutoRec(n_users=3, hidden=5)
    V, mu = model.encoder.weight.detach().numpy(), model.encoder.bias.detach().numpy()
    W, b = model.decoder.weight.detach().numpy(), model.decoder.bias.detach().numpy()
    h = (1 / (1 + np.exp(-(R.numpy() @ V.T + mu)))) @ W.T + b  # h(r) = W g(V r + μ) + b, one row per movie
    expected = np.clip(h, 1, 5)
    expected[3] = 3.0
    predict = make_predictor(model, R, M)
    users, items = np.array([0, 1, 2, 0, 2]), np.array([0, 1, 2, 3, 3])
    np.testing.assert_allclose(predict(users, items), expected[items, users], rtol=1e-5)


@pytest.mark.parametrize("name", ["collab-dot", "collab-bias", "collab-nn", "mf-sgd", "autorec"])
def test_reloaded_model_predicts_what_the_run_evaluated(name, synthetic_data):
    from dldojo.engine.launch import run_experiment
    from dldojo.engine.reload import load_run
    from dldojo.recsys import common

    summary = run_experiment(name, preset="smoke", seed=2, quiet=True, report=False)
    run = load_run(summary["run_dir"], family="recsys")
    _, _, test = common.load_split(run.config.split, run.config.max_ratings)
    reloaded = common.evaluate(common.predictor(run.model), test)
    assert reloaded["test_mse"] == pytest.approx(summary["metrics"]["test_mse"], rel=1e-6)
    assert len(common.recommend(summary["run_dir"], user_id=1, n=3, min_ratings=1)) == 3


def test_recommend_refuses_what_is_not_a_finished_recsys_run(synthetic_data, tmp_path):
    from dldojo.engine.errors import DojoError
    from dldojo.engine.launch import run_experiment
    from dldojo.recsys.common import recommend

    with pytest.raises(DojoError, match="not a dldojo run directory"):
        recommend(tmp_path, user_id=1)
    text_run = run_experiment("seq2seq-gru", preset="smoke", quiet=True, report=False)["run_dir"]
    with pytest.raises(DojoError, match=r"run of seq2seq-gru \(family text\).*recsys family"):
        recommend(text_run, user_id=1)


def test_movie_map_names_the_ends_of_each_component():
    from dldojo.recsys.common import extremes

    xy = np.array([[0.0, 0.0], [5.0, 0.1], [-4.0, 0.2], [0.3, 3.0], [0.1, -6.0], [1.0, 1.0]])
    assert extremes(xy, per_end=1).tolist() == [1, 2, 3, 4]  # max/min of PC 1, then of PC 2
    assert sorted(extremes(xy, per_end=10)) == list(range(6))  # each point once


def test_movie_map_labels_do_not_overlap():
    """The greedy placement: in a crowded scatter no two labels overlap and no label covers a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dldojo.engine.plotting import _overlap, _text_box, label_points
    from dldojo.recsys.common import extremes

    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(0, 0.3, (40, 2)), rng.normal(0, 1.0, (10, 2))])
    fig, ax = plt.subplots(figsize=(10, 8))
    ax.scatter(xy[:, 0], xy[:, 1], s=12)
    ends = extremes(xy, per_end=4)
    labels = label_points(ax, xy[ends], [f"A rather long movie title ({k})" for k in range(len(ends))], avoid=xy)
    renderer = fig.canvas.get_renderer()
    boxes = [_text_box(a, renderer) for a in labels]
    assert len(boxes) == len(ends) >= 12
    assert all(_overlap(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])
    points = ax.transData.transform(xy)
    assert not any(b.contains(x, y) for b in boxes for x, y in points)
    plt.close(fig)
