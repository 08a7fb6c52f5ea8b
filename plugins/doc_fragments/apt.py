# The options apt_packages and kernel_headers share (the apt engine of crates/apt): documented
# once here, pulled into each module's sidecar docs (plugins/modules/<name>.yml) with
# `extends_documentation_fragment: homeops.observability.apt`. They are also what a play sets
# once for both with `module_defaults: {group/homeops.observability.apt: {...}}` (meta/runtime.yml).
# tests/test_module_specs.py checks every option here against the argument spec each module's binary prints.
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  update_cache:
    description:
      - Run C(apt-get update) first when something has to be installed and the package lists are older
        than O(cache_valid_time). Skipped entirely when everything is already as wanted.
    type: bool
    default: false
  cache_valid_time:
    description:
      - Seconds the package lists count as fresh, judged by the newer mtime of
        C(/var/lib/apt/periodic/update-success-stamp) and C(/var/lib/apt/lists). V(0) means always update
        when O(update_cache=true).
    type: int
    default: 0
  lock_timeout:
    description:
      - Seconds to wait in total for the apt/dpkg locks, from the start of the task. V(0) fails at once
        on a held lock. The holder (PID and command) is named in the warnings while waiting.
    type: int
    default: 600
  retries:
    description: Extra attempts after a transient network or mirror failure.
    type: int
    default: 3
  retry_delay:
    description: Seconds before the first retry; doubled after each, capped at 60.
    type: int
    default: 5
"""
