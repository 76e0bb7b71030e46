"""Recommender systems: collaborative filtering with embeddings and matrix factorisation."""

from dldojo.engine.family import Family

FAMILY = Family(
    name="recsys",
    experiments=("dldojo.recsys.collab", "dldojo.recsys.mf_sgd", "dldojo.recsys.autorec"),
    datasets=("dldojo.data.movielens",),
    commands="dldojo.recsys.cli",
    actions={"recommend": "dldojo.recsys.actions:recommend"},
)
