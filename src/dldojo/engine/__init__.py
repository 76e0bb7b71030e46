"""The engine: registry, config, run context (state, RNG streams, checkpoints), fit, reload, sub-runs, report.

It names no family: families declare themselves (`engine.family`) and the engine finds them.
"""
