"""Naive Bayes: the course's worked examples exactly, parity with scikit-learn (predictions and log-probabilities)
on the play-golf table and the real SMS Spam Collection, the bag of words, and the SMS target on real data."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from sklearn import naive_bayes as sk

from dldojo.classic import bag_of_words
from dldojo.classic.naive_bayes import (PLAY_GOLF, BernoulliNB, CategoricalNB, MultinomialNB, bayes_rule,
                                        encode_categories)


# ----- worked examples -----
def test_bayes_rule_lung_cancer_given_smoking():
    # P(cancer | smoker) = P(smoker | cancer) P(cancer) / P(smoker) = 0.3 · 0.074 / 0.294
    assert bayes_rule(likelihood=0.3, prior=0.074, evidence=0.294) == pytest.approx(0.07551, abs=5e-6)
    assert round(bayes_rule(0.3, 0.074, 0.294), 4) == 0.0755


def play_golf():
    codes, names = encode_categories(PLAY_GOLF, columns=4)
    labels = np.array([row[4] for row in PLAY_GOLF])
    return codes, names, labels


def test_play_golf_table_counts():
    assert len(PLAY_GOLF) == 14
    labels = [row[4] for row in PLAY_GOLF]
    assert Fraction(labels.count("yes"), 14) == Fraction(9, 14)
    sunny_yes = sum(1 for row in PLAY_GOLF if row[0] == "sunny" and row[4] == "yes")
    assert Fraction(sunny_yes, labels.count("yes")) == Fraction(2, 9)


def test_play_golf_sunny_cool_high_windy_is_no():
    """Unsmoothed (α = 0) counts: yes 9/14 · 2/9 · 3/9 · 3/9 · 3/9 = 1/189,
    no 5/14 · 3/5 · 1/5 · 4/5 · 3/5 = 18/875."""
    codes, names, labels = play_golf()
    day = [[names[j].index(v) for j, v in enumerate(("sunny", "cool", "high", "true"))]]
    model = CategoricalNB(alpha=0.0).fit(codes, labels)
    scores = np.exp(model.joint_log_likelihood(np.array(day)))[0]
    no, yes = scores[list(model.classes_).index("no")], scores[list(model.classes_).index("yes")]
    assert yes == pytest.approx(1 / 189, rel=1e-12) and round(yes, 6) == 0.005291
    assert no == pytest.approx(18 / 875, rel=1e-12) and round(no, 6) == 0.020571
    assert model.predict(np.array(day))[0] == "no"
    # the same by hand, exactly
    rows = [r for r in PLAY_GOLF]

    def unnormalised(cls):
        of_class = [r for r in rows if r[4] == cls]
        score = Fraction(len(of_class), len(rows))
        for j, value in enumerate(("sunny", "cool", "high", "true")):
            score *= Fraction(sum(r[j] == value for r in of_class), len(of_class))
        return score

    assert unnormalised("yes") == Fraction(1, 189) and unnormalised("no") == Fraction(18, 875)


def spam_example():
    """30 spam and 100 normal mails with two words' presence: w1 in 7 spam / 1 normal, w2 in 13 spam / 29 normal.

    The course's table lists, for normal mail, 'contains' / 'does not contain' counts whose rows do not add up
    to the 100 normal mails, so the probabilities it implies for a word do not sum to 1. Only the 'contains'
    counts (1/100 and 29/100) enter the computation, so its result stands; the table built here is consistent
    (every mail either contains a word or not), which `test_spam_example_table_is_consistent` pins."""
    X = np.zeros((130, 2))
    y = np.array([1] * 30 + [0] * 100)  # 1 = spam
    X[:7, 0], X[:13, 1] = 1, 1  # spam containing w1, w2
    X[30:31, 0], X[30:59, 1] = 1, 1  # normal containing w1, w2
    return X, y


def test_spam_example_posterior():
    X, y = spam_example()
    model = BernoulliNB(alpha=0.0).fit(X, y)
    both = np.array([[1.0, 1.0]])
    joint = np.exp(model.joint_log_likelihood(both))[0]
    spam, normal = joint[1], joint[0]
    assert spam == pytest.approx(7 / 30 * 13 / 30 * 30 / 130, rel=1e-12) and round(spam, 4) == 0.0233
    assert normal == pytest.approx(1 / 100 * 29 / 100 * 100 / 130, rel=1e-12) and round(normal, 5) == 0.00223
    posterior = model.predict_proba(both)[0, 1]
    assert posterior == pytest.approx(spam / (spam + normal), rel=1e-12) and round(posterior, 4) == 0.9127


def test_spam_example_table_is_consistent():
    X, y = spam_example()
    for cls, size in ((1, 30), (0, 100)):
        contains = X[y == cls].sum(0)
        assert np.all(contains + (size - contains) == size)  # per word: contains + does not contain = all mails
    model = BernoulliNB(alpha=0.0).fit(X, y)
    p = np.exp(model.feature_log_prob_)
    np.testing.assert_allclose(p + np.exp(model.feature_log_prob_absent_), 1.0, rtol=1e-12)


# ----- parity with scikit-learn -----
def assert_same(ours, theirs, X):
    np.testing.assert_allclose(ours.class_log_prior_, theirs.class_log_prior_, rtol=1e-12)
    np.testing.assert_allclose(ours.predict_log_proba(X), theirs.predict_log_proba(X), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.joint_log_likelihood(X), theirs.predict_joint_log_proba(X), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_categorical_equals_sklearn_on_play_golf(alpha):
    codes, _, labels = play_golf()
    ours, theirs = CategoricalNB(alpha).fit(codes, labels), sk.CategoricalNB(alpha=alpha).fit(codes, labels)
    for mine, sklearns in zip(ours.feature_log_prob_, theirs.feature_log_prob_):
        np.testing.assert_allclose(mine, sklearns, rtol=1e-12)
    every_day = np.array(np.meshgrid(*[range(k) for k in ours.n_categories_])).reshape(4, -1).T  # all 36 days
    assert_same(ours, theirs, every_day)


def _sms_matrices():
    from dldojo.data import sms_spam

    train, _, test = sms_spam.split(sms_spam.load())
    docs_train = bag_of_words.featurize(train.texts, "sms", 1)
    vocab = bag_of_words.Vocabulary.build(docs_train)
    return (bag_of_words.count_matrix(docs_train, vocab), train.labels,
            bag_of_words.count_matrix(bag_of_words.featurize(test.texts, "sms", 1), vocab), test.labels, vocab)


@pytest.mark.parametrize("ours_cls,theirs_cls,alpha", [(MultinomialNB, sk.MultinomialNB, 1.0),
                                                        (MultinomialNB, sk.MultinomialNB, 0.03),
                                                        (BernoulliNB, sk.BernoulliNB, 1.0),
                                                        (BernoulliNB, sk.BernoulliNB, 0.03)])
def test_equals_sklearn_on_real_sms(real_data, ours_cls, theirs_cls, alpha):
    X_train, y_train, X_test, _, _ = _sms_matrices()
    ours, theirs = ours_cls(alpha).fit(X_train, y_train), theirs_cls(alpha=alpha).fit(X_train, y_train)
    np.testing.assert_allclose(ours.feature_count_, theirs.feature_count_)
    np.testing.assert_allclose(ours.feature_log_prob_, theirs.feature_log_prob_, rtol=1e-12)
    assert_same(ours, theirs, X_test)


def test_categorical_on_word_presence_equals_sklearn_and_bernoulli(real_data):
    """Word presence as a two-valued category: CategoricalNB = scikit-learn's, and (both categories smoothed
    with α over k = 2 values) the same model as Bernoulli naive Bayes."""
    X_train, y_train, X_test, _, vocab = _sms_matrices()
    columns = np.arange(300)  # the 300 most frequent words keep the dense matrices small
    A, B = (np.asarray((X[:, columns] > 0).toarray(), dtype=np.int64) for X in (X_train, X_test))
    ours, theirs = CategoricalNB(1.0).fit(A, y_train), sk.CategoricalNB(alpha=1.0).fit(A, y_train)
    assert_same(ours, theirs, B)
    bernoulli = BernoulliNB(1.0).fit(A, y_train)
    np.testing.assert_allclose(ours.predict_log_proba(B), bernoulli.predict_log_proba(B), rtol=1e-9, atol=1e-9)


# ----- bag of words -----
def test_tokenizer_and_vocabulary():
    assert bag_of_words.tokenize("WINNER!! Claim £1000 now, don't wait", "sms") == \
        ["winner", "!", "!", "claim", "£1000", "now", "don't", "wait"]
    assert bag_of_words.tokenize("it 's not good .", "whitespace") == ["it", "'s", "not", "good", "."]
    assert bag_of_words.ngrams_of(["not", "good", "at", "all"], 2)[-3:] == ["not good", "good at", "at all"]
    vocab = bag_of_words.Vocabulary.build([["b", "a", "b"], ["c", "b", "a"]], min_count=2)
    assert vocab.words == ["b", "a"]  # by count, then alphabetically; 'c' is too rare
    X = bag_of_words.count_matrix([["a", "b", "b", "zzz"], []], vocab)
    assert X.toarray().tolist() == [[2.0, 1.0], [0.0, 0.0]]


def test_count_matrix_equals_sklearn_count_vectorizer():
    from sklearn.feature_extraction.text import CountVectorizer

    texts = ["Free entry in 2 a wkly comp", "U dun say so early hor... U c already then say", "free FREE free"]
    docs = bag_of_words.featurize(texts, "sms", 2)
    vocab = bag_of_words.Vocabulary.build(docs)
    theirs = CountVectorizer(tokenizer=lambda t: bag_of_words.tokenize(t, "sms"), lowercase=False,
                             token_pattern=None, ngram_range=(1, 2)).fit(texts)
    order = [theirs.vocabulary_[w] for w in vocab.words]
    np.testing.assert_array_equal(bag_of_words.count_matrix(docs, vocab).toarray(),
                                  theirs.transform(texts).toarray()[:, order])


# ----- the experiments -----
def test_sms_quick_reaches_the_target_on_real_data(real_data):
    from dldojo.engine.launch import run_experiment

    summary = run_experiment("naive-bayes-sms", preset="quick", quiet=True, report=False)
    assert summary["metrics"]["test_accuracy"] >= 0.98, summary["metrics"]
    assert summary["facts"]["sklearn_multinomial_agrees"] and summary["facts"]["sklearn_bernoulli_agrees"]


def test_classify_action_on_a_smoke_run(synthetic_data):
    import dldojo
    from dldojo.engine.errors import DojoError

    r = dldojo.run("naive-bayes-sms", preset="smoke", quiet=True)
    table = r.classify(["free prize cash claim now", "see you later at home for dinner"])
    assert [row["class"] for row in table] == ["spam", "ham"]
    assert all(0.5 < row["probability"] <= 1 for row in table)
    assert set(table[0]["evidence"].split()) <= {"free", "prize", "cash", "claim", "now"}
    with pytest.raises(DojoError, match="rules_for needs a run of association-rules"):
        r.rules_for("Star Wars")
