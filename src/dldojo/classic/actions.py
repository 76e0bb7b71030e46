"""What a finished classic-family run can do from Python (declared in this family's `FAMILY.actions`):

    dldojo.load(nb_run).classify("WINNER!! Claim your prize now")    # naive-bayes-sms / naive-bayes-sst2
    dldojo.load(rules_run).rules_for("Star Wars")                     # association-rules

the `dldojo classify` and `dldojo rules` commands as functions of the loaded run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dldojo.engine.display import Table
from dldojo.engine.errors import DojoError
from dldojo.engine.reload import LoadedRun

NB_EXPERIMENTS = ("naive-bayes-sms", "naive-bayes-sst2")
RULES_EXPERIMENTS = ("association-rules",)


def _require(run: LoadedRun, experiments: tuple[str, ...], action: str) -> None:
    if run.experiment.name not in experiments:
        raise DojoError(f"{action} needs a run of {' or '.join(experiments)}; {run.run_dir} is a run of "
                        f"{run.experiment.name}.")


def classify(run: LoadedRun, text: str | Sequence[str], evidence: int = 3) -> Table:
    """Classify one text (or a list of them) with a naive Bayes run: per text the predicted class, its posterior
    P(class | text) and the `evidence` words present in the text that pushed most towards that class
    (largest log P(w | class) − log P(w | other class))."""
    import torch

    from dldojo.classic.bag_of_words import Vocabulary, count_matrix, featurize
    from dldojo.classic.naive_bayes_text import CLASSIFIER_FILE

    _require(run, NB_EXPERIMENTS, "classify")
    if isinstance(evidence, bool) or not isinstance(evidence, int) or evidence < 0:
        raise DojoError(f"evidence must be an integer >= 0, got {evidence!r}.")
    texts = [text] if isinstance(text, str) else list(text)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise DojoError("classify takes a text (str) or a non-empty list of texts.")
    meta = run.read_json(CLASSIFIER_FILE)
    vocab = Vocabulary(meta["words"])
    docs = featurize(texts, meta["tokenizer"], meta["ngrams"])
    X = count_matrix(docs, vocab)
    model = run.model
    with torch.no_grad():
        jll = model(torch.from_numpy(X.toarray())).numpy()
    log_posterior = jll - np.logaddexp.reduce(jll, axis=1, keepdims=True)
    weights = model.feature_log_prob.numpy()
    rows = []
    for r, (t, doc) in enumerate(zip(texts, docs)):
        cls = int(jll[r].argmax())
        present = sorted({vocab.index[w] for w in doc if w in vocab.index},
                         key=lambda j: -(weights[cls, j] - weights[1 - cls, j]))
        rows.append({"text": t if len(t) <= 80 else t[:77] + "...", "class": meta["classes"][cls],
                     "probability": float(np.exp(log_posterior[r, cls])),
                     "evidence": " ".join(vocab.words[j] for j in present[:evidence])})
    return Table(rows, caption=f"{run.experiment.name}: {meta['variant']} naive Bayes, α = {meta['alpha']:g}")


def rules_for(run: LoadedRun, movie: str | int, n: int = 10, max_antecedent: int = 1) -> Table:
    """The association rules of an association-rules run whose 'if liked' side holds `movie` (a MovieLens id
    or a piece of its title) and at most `max_antecedent` movies: 'people who liked X also liked Y', by lift.
    The run keeps the rules with one movie on the 'then' side and at most two on the 'if' side."""
    from dldojo.classic.association_rules import RULES_FILE

    _require(run, RULES_EXPERIMENTS, "rules_for")
    for value, what in ((n, "n"), (max_antecedent, "max_antecedent")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DojoError(f"{what} must be an integer >= 1, got {value!r}.")
    saved = run.read_json(RULES_FILE)
    titles = {int(k): v for k, v in saved["titles"].items()}
    movie_id = find_movie(movie, titles)
    if max_antecedent > saved["max_saved_antecedent"]:
        raise DojoError(f"the run kept rules with at most {saved['max_saved_antecedent']} movies on the 'if liked' "
                        f"side; max_antecedent {max_antecedent} asks for more.")
    rows = [r for r in saved["rules"] if movie_id in r[0] and len(r[0]) <= max_antecedent]
    rows.sort(key=lambda r: (-r[4], -r[3]))

    def named(ids) -> str:
        return " + ".join(titles.get(i, str(i)) for i in ids)

    return Table(({"if liked": named(a), "then also liked": named(c), "confidence": conf, "lift": lift,
                   "support": sup} for a, c, sup, conf, lift in rows[:n]),
                 caption=f"{run.experiment.name}: rules for {titles[movie_id]} ({len(rows)} found, "
                         f"min support {saved['min_support']:g}, min confidence {saved['min_confidence']:g})")


def find_movie(movie: str | int, titles: dict[int, str]) -> int:
    """A MovieLens id from an id or a case-insensitive piece of a title (which must name one movie)."""
    if isinstance(movie, bool) or not isinstance(movie, int | str):
        raise DojoError(f"movie must be a MovieLens id or a piece of a title, got {movie!r}.")
    if isinstance(movie, str) and movie.strip().isdigit():
        movie = int(movie)
    if isinstance(movie, int):
        if movie not in titles:
            raise DojoError(f"movie id {movie} was liked by no training user of this run (or does not exist).")
        return movie
    wanted = movie.strip().lower()
    exact = [i for i, t in titles.items() if t.lower() == wanted]
    matches = exact or [i for i, t in titles.items() if wanted in t.lower()]
    if not matches:
        raise DojoError(f"no liked movie's title contains {movie!r}.")
    if len(matches) > 1:
        shown = "; ".join(f"{i}: {titles[i]}" for i in sorted(matches)[:10])
        raise DojoError(f"{movie!r} matches {len(matches)} movies ({shown}{'; ...' if len(matches) > 10 else ''}); "
                        f"give more of the title or the id.")
    return matches[0]
