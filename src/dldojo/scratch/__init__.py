"""From-scratch NumPy implementations of the curriculum's classic exercises (teaching code, parity-tested)."""
