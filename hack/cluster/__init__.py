"""genjob's cluster test harness (hack/cluster), imported as the package ``genjob_cluster``.

``harness.py`` is the entry point (CLI and the names tests use) and registers this
folder under that package name, so it works when run as a script and when loaded by
path from ``tests/cluster/conftest.py``. Modules: ``errors`` (exceptions), ``tools``
(the pinned binaries in the cache), ``pki`` (certificates), ``processes`` (ports and
process groups), ``components`` (each component's flags, kubeconfigs, kwok nodes) and
``controlplane`` (the ``Cluster`` that starts and stops it all).
"""
