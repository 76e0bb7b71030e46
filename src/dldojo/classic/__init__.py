"""Classic methods taught next to deep learning: naive Bayes (Bayes' rule, spam filtering, sentiment) and
association rules (support, confidence, lift; Apriori and FP-growth), written in NumPy and tested against
scikit-learn and mlxtend."""

from dldojo.engine.family import Family

FAMILY = Family(
    name="classic",
    experiments=("dldojo.classic.naive_bayes_text", "dldojo.classic.association_rules"),
    datasets=("dldojo.data.sms_spam", "dldojo.data.sst", "dldojo.data.movielens"),
    commands="dldojo.classic.cli",
    actions={"classify": "dldojo.classic.actions:classify", "rules_for": "dldojo.classic.actions:rules_for"},
)
