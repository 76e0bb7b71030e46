"""dldojo: the deep-learning curriculum as real, runnable, tested experiments on a CPU laptop."""

__version__ = "0.1.0"
