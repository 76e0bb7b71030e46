"""Naive Bayes, written from Bayes' rule (NumPy teaching code, tested equal to scikit-learn's).

Bayes' rule turns what is easy to count, P(x | y), into what is wanted, P(y | x):

    P(y | x) = P(x | y) P(y) / P(x),        P(x) = Σ_y' P(x | y') P(y')

The "naive" assumption: the features x_1 … x_d are independent given the class, so
P(x | y) = Π_i P(x_i | y) and, in logs (products of many small numbers underflow),

    ŷ = argmax_y  log P(y) + Σ_i log P(x_i | y)        (the joint log-likelihood, `joint_log_likelihood`)

P(y) is the class's share of the training examples. The three event models differ in P(x_i | y); each is a
count ratio with Laplace (additive) smoothing α, so that a value never seen with a class does not zero out
the whole product (α = 0: the raw maximum-likelihood counts; α = 1: Laplace's "add one"):

    multinomial  x_i = count of word i:  log P(x | y) = Σ_i x_i log θ_yi,   θ_yi = (N_yi + α) / (N_y + α d)
                 (N_yi: occurrences of word i in class y, N_y = Σ_i N_yi; the multinomial coefficient is
                 the same for every class and left out)
    Bernoulli    x_i ∈ {0, 1}, word i present:  P(x | y) = Π_i p_yi^x_i (1 − p_yi)^(1 − x_i),
                 p_yi = (n_yi + α) / (n_y + 2α)   (n_yi: documents of class y containing word i, n_y: documents)
                 — absent words count too
    categorical  x_i ∈ {0, …, k_i − 1}:  P(x_i = v | y) = (N_yiv + α) / (n_y + α k_i)

(McCallum & Nigam 1998, "A comparison of event models for naive Bayes text classification".)
Each class below has scikit-learn's attribute names (`class_log_prior_`, `feature_log_prob_`, ...) so that
`tests/test_classic_naive_bayes.py` compares them one to one with `sklearn.naive_bayes`.
"""

from __future__ import annotations

import abc
import numpy as np
import scipy.sparse as sp

# The play-golf (play-tennis) table: Quinlan 1986, "Induction of decision trees", Table 1 — 14 Saturday
# mornings described by outlook, temperature, humidity and wind, and whether golf was played.
PLAY_GOLF_FEATURES = ("outlook", "temperature", "humidity", "windy")
PLAY_GOLF = (
    ("sunny", "hot", "high", "false", "no"),
    ("sunny", "hot", "high", "true", "no"),
    ("overcast", "hot", "high", "false", "yes"),
    ("rain", "mild", "high", "false", "yes"),
    ("rain", "cool", "normal", "false", "yes"),
    ("rain", "cool", "normal", "true", "no"),
    ("overcast", "cool", "normal", "true", "yes"),
    ("sunny", "mild", "high", "false", "no"),
    ("sunny", "cool", "normal", "false", "yes"),
    ("rain", "mild", "normal", "false", "yes"),
    ("sunny", "mild", "normal", "true", "yes"),
    ("overcast", "mild", "high", "true", "yes"),
    ("overcast", "hot", "normal", "false", "yes"),
    ("rain", "mild", "high", "true", "no"),
)


def bayes_rule(likelihood: float, prior: float, evidence: float) -> float:
    """P(A | B) = P(B | A) P(A) / P(B)."""
    return likelihood * prior / evidence


def encode_categories(rows, columns: int | None = None) -> tuple[np.ndarray, list[list[str]]]:
    """Rows of category names -> (integer codes, the sorted category names of each column)."""
    rows = [tuple(r) for r in rows]
    columns = len(rows[0]) if columns is None else columns
    names = [sorted({r[j] for r in rows}) for j in range(columns)]
    codes = np.array([[names[j].index(r[j]) for j in range(columns)] for r in rows], dtype=np.int64)
    return codes, names


def _dense(X) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _one_hot(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (np.asarray(y)[:, None] == classes[None, :]).astype(np.float64)


class _NaiveBayes(abc.ABC):
    """What every event model shares: the prior, Bayes' rule in logs, prediction."""

    classes_: np.ndarray
    class_count_: np.ndarray
    class_log_prior_: np.ndarray

    def __init__(self, alpha: float = 1.0):
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)

    def _fit_prior(self, y) -> np.ndarray:
        """Store the classes and log P(y) = log(n_y / n); return the one-hot label matrix Y (n × classes)."""
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        Y = _one_hot(y, self.classes_)
        self.class_count_ = Y.sum(0)
        self.class_log_prior_ = np.log(self.class_count_) - np.log(self.class_count_.sum())
        return Y

    @abc.abstractmethod
    def joint_log_likelihood(self, X) -> np.ndarray:
        """log P(y) + log P(x | y) for every row of X and class: n × classes."""
        ...

    def predict_log_proba(self, X) -> np.ndarray:
        """log P(y | x): the joint log-likelihood minus log P(x) = logsumexp over the classes (Bayes' rule)."""
        jll = self.joint_log_likelihood(X)
        top = jll.max(1, keepdims=True)
        return jll - (top + np.log(np.exp(jll - top).sum(1, keepdims=True)))

    def predict_proba(self, X) -> np.ndarray:
        return np.exp(self.predict_log_proba(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.joint_log_likelihood(X), axis=1)]


class MultinomialNB(_NaiveBayes):
    """Word counts: θ_yi = (N_yi + α) / (N_y + α d)."""

    feature_count_: np.ndarray
    feature_log_prob_: np.ndarray

    def fit(self, X, y) -> MultinomialNB:
        Y = self._fit_prior(y)
        self.feature_count_ = np.asarray(X.T @ Y).T if sp.issparse(X) else Y.T @ np.asarray(X, dtype=np.float64)
        smoothed = self.feature_count_ + self.alpha
        with np.errstate(divide="ignore"):  # α = 0 and an unseen word: log 0 = −inf, as the formula says
            self.feature_log_prob_ = np.log(smoothed) - np.log(smoothed.sum(1, keepdims=True))
        return self

    def joint_log_likelihood(self, X) -> np.ndarray:
        return np.asarray(X @ self.feature_log_prob_.T) + self.class_log_prior_


class BernoulliNB(_NaiveBayes):
    """Word presence: p_yi = (n_yi + α) / (n_y + 2α); every word of the vocabulary counts, present or absent."""

    feature_count_: np.ndarray
    feature_log_prob_: np.ndarray

    @staticmethod
    def binarize(X):
        """Counts -> presence (x > 0)."""
        return (X > 0).astype(np.float64) if sp.issparse(X) else (np.asarray(X) > 0).astype(np.float64)

    def fit(self, X, y) -> BernoulliNB:
        Y = self._fit_prior(y)
        X = self.binarize(X)
        self.feature_count_ = np.asarray(X.T @ Y).T if sp.issparse(X) else Y.T @ X
        with np.errstate(divide="ignore"):
            self.feature_log_prob_ = np.log(self.feature_count_ + self.alpha) - np.log(
                self.class_count_[:, None] + 2 * self.alpha)
        return self

    @property
    def feature_log_prob_absent_(self) -> np.ndarray:
        """log(1 − p_yi): the factor of a word that is absent."""
        with np.errstate(divide="ignore"):
            return np.log1p(-np.exp(self.feature_log_prob_))

    def joint_log_likelihood(self, X) -> np.ndarray:
        # Σ_i [x_i log p + (1 − x_i) log(1 − p)] = Σ_i x_i (log p − log(1 − p)) + Σ_i log(1 − p): X stays sparse
        # (with α = 0 a word seen in every or no document of a class makes p 1 or 0: infinities, as in sklearn)
        absent = self.feature_log_prob_absent_
        present = np.asarray(self.binarize(X) @ (self.feature_log_prob_ - absent).T)
        return present + absent.sum(1) + self.class_log_prior_


class CategoricalNB(_NaiveBayes):
    """Integer-coded categories per feature: P(x_i = v | y) = (N_yiv + α) / (n_y + α k_i), k_i categories
    (the largest code seen in training + 1, as scikit-learn counts them)."""

    n_categories_: np.ndarray
    category_count_: list[np.ndarray]
    feature_log_prob_: list[np.ndarray]

    def fit(self, X, y) -> CategoricalNB:
        Y = self._fit_prior(y)
        X = _dense(X).astype(np.int64)
        if (X < 0).any():
            raise ValueError("categories must be coded 0, 1, 2, ...")
        self.n_categories_ = X.max(0) + 1
        self.category_count_, self.feature_log_prob_ = [], []
        for i, k in enumerate(self.n_categories_):
            counts = Y.T @ np.eye(k)[X[:, i]]  # classes × k: N_yiv
            self.category_count_.append(counts)
            with np.errstate(divide="ignore"):
                self.feature_log_prob_.append(np.log(counts + self.alpha)
                                              - np.log(counts.sum(1, keepdims=True) + self.alpha * k))
        return self

    def joint_log_likelihood(self, X) -> np.ndarray:
        X = _dense(X).astype(np.int64)
        jll = np.tile(self.class_log_prior_, (len(X), 1))
        for i, log_prob in enumerate(self.feature_log_prob_):
            jll += log_prob[:, X[:, i]].T
        return jll


MODELS = {"multinomial": MultinomialNB, "bernoulli": BernoulliNB, "categorical": CategoricalNB}
