"""Load a Python module that ships inside a lab stand-in package (lab/packages/...), so the
checks here and the stand-in run the same code.

The one place that loads code by file path: the stand-ins' files are installed on lab hosts
(/usr/bin/loki, /usr/lib/alloy-lab/...), not importable packages of this repository. Our own
code imports homeops_dev, upstream and action_plugins by name (pytest.ini, python -m)."""
import functools
import importlib.machinery
import importlib.util
import os

from homeops_dev import ROOT

REPO = str(ROOT)


@functools.lru_cache(maxsize=None)
def load(name, relpath):
    """The module NAME from REPO/RELPATH, loaded once."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_file(name, path):
    """The module NAME from the file PATH, loaded afresh: also a file without a .py suffix, such
    as a stand-in's executable (lab/packages/loki/usr/bin/loki)."""
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod
