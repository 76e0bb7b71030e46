"""Sequence models for text: seq2seq translation (GRU, attention, Transformer), decoding, the translate CLI."""

from dldojo.engine.family import Family

FAMILY = Family(
    name="text",
    experiments=("dldojo.text.seq2seq", "dldojo.text.transformer"),
    datasets=("dldojo.data.enja",),
    commands="dldojo.text.cli",
    actions={"translate": "dldojo.text.actions:translate"},
)
