"""Load a Python module that ships inside a lab stand-in package (lab/packages/...), so the
checks here and the stand-in run the same code."""
import functools
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def load(name, relpath):
    """The module NAME from REPO/RELPATH, loaded once."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
