"""Check an Alloy config against the component reference of an Alloy version.

The reference is upstream/alloy/<version>.json (made by scripts/extract-alloy-reference.py
from Alloy's docs at the release tag). The parser and the checker are the ones the lab's
Alloy stand-in runs at start-up (lab/packages/alloy/usr/lib/alloy-lab/alloysyntax.py), so
`make test` rejects what the lab would refuse to start with, and both follow Alloy: an
unknown component, argument or block fails the load.
"""
import os

from homeops_dev import labcode

HERE = os.path.dirname(os.path.abspath(__file__))


def syntax():
    return labcode.load("alloysyntax", "lab/packages/alloy/usr/lib/alloy-lab/alloysyntax.py")


def reference_path(version):
    return os.path.join(HERE, "alloy", "%s.json" % version)


def check_config(text, version):
    """[(line, col, message)]: empty when Alloy <version> would load the config's components."""
    s = syntax()
    try:
        stmts = s.parse(text)
    except s.AlloyError as e:
        return e.diags
    return s.check(stmts, s.load_reference(reference_path(version)))
