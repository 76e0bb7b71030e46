"""Sequence models for text: seq2seq translation (GRU, attention, Transformer), decoding, the translate CLI."""
