"""dldojo: the deep-learning curriculum as real, runnable, tested experiments on a CPU laptop.

The Python API (`dldojo.api`; importing it loads neither torch nor matplotlib)::

    import dldojo
    dldojo.experiments()                                   # what can be run
    dldojo.show("mf-sgd")                                  # config fields, presets, references
    r = dldojo.run("mf-sgd", preset="smoke", alpha=0.004)  # keyword overrides = the CLI's --set
    r.metrics, r.history, r.figures; r.recommend(user=42)  # results and the family's actions
    dldojo.load(r.run_dir), dldojo.runs()                  # finished runs
"""

__version__ = "0.1.0"

from dldojo.api import (  # noqa: E402
    DojoError,
    History,
    Result,
    experiments,
    install_ipython_handler,
    load,
    resume,
    run,
    runs,
    show,
)

__all__ = ["DojoError", "History", "Result", "experiments", "load", "resume", "run", "runs", "show"]

install_ipython_handler()
