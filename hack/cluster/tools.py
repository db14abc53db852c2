"""Where hack/cluster/build-tools.sh caches each pinned binary, stage file and CRD folder.

The layout is ``${GENJOB_TOOLS_CACHE:-~/.cache/genjob/tools}/<name>-<version>/bin/<binary>``
with the versions read from ``versions.env`` (the one file that pins them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolMissingError

HERE = Path(__file__).resolve().parent
BUILD_HINT = "Run `make tools` (hack/cluster/build-tools.sh) to build them; later runs reuse the cache."


def read_versions(path: Path = HERE / "versions.env") -> dict[str, str]:
    """Parse the KEY=value lines of versions.env (comments and blank lines skipped)."""
    versions = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Tools:
    """The cached tools of one set of pinned versions."""

    cache: Path
    versions: dict[str, str]

    @classmethod
    def from_env(cls) -> Tools:
        default = Path.home() / ".cache" / "genjob" / "tools"
        return cls(Path(os.environ.get("GENJOB_TOOLS_CACHE", default)), read_versions())

    def _dir(self, name: str, key: str) -> Path:
        return self.cache / f"{name}-{self.versions[key]}"

    @property
    def bin_dirs(self) -> dict[str, Path]:
        """Binary name -> the directory that holds it."""
        k8s = self._dir("kubernetes", "KUBERNETES_VERSION") / "bin"
        return {
            "etcd": self._dir("etcd", "ETCD_VERSION") / "bin",
            "kube-apiserver": k8s,
            "kube-controller-manager": k8s,
            "kube-scheduler": k8s,
            "kubectl": k8s,
            "kwok": self._dir("kwok", "KWOK_VERSION") / "bin",
            "helm": self._dir("helm", "HELM_VERSION") / "bin",
            **self.autoscaler_bin_dirs,
        }

    @property
    def autoscaler_bin_dirs(self) -> dict[str, Path]:
        """KEDA's operator and metrics adapter, Karpenter's kwok provider (the autoscaling tier)."""
        keda = self._dir("keda", "KEDA_VERSION") / "bin"
        return {
            "keda-operator": keda,
            "keda-adapter": keda,
            "karpenter-kwok": self._dir("karpenter-kwok", "KARPENTER_VERSION") / "bin",
        }

    @property
    def kwok_stages(self) -> Path:
        """kwok's Stage objects (fast node and pod lifecycles, node heartbeat)."""
        return self._dir("kwok", "KWOK_VERSION") / "stages" / "stages.yaml"

    @property
    def keda_crds(self) -> Path:
        return self.cache / "crds" / f"keda-{self.versions['KEDA_VERSION']}"

    @property
    def karpenter_crds(self) -> Path:
        return self.cache / "crds" / f"karpenter-{self.versions['KARPENTER_VERSION']}"

    @property
    def karpenter_kwok_crds(self) -> Path:
        """The KWOKNodeClass CRD of Karpenter's kwok provider."""
        return self.cache / "crds" / f"karpenter-kwok-{self.versions['KARPENTER_VERSION']}"

    def path(self, name: str) -> Path:
        """The path of binary ``name``; ToolMissingError says how to build it if absent."""
        binary = self.bin_dirs[name] / name
        if not os.access(binary, os.X_OK):
            raise ToolMissingError(f"{name} is missing: expected an executable at {binary}.\n{BUILD_HINT}")
        return binary

    def check(self, autoscalers: bool = False) -> None:
        """Raise ToolMissingError naming every missing binary or stage file at once.

        The autoscalers (KEDA, Karpenter's kwok provider) are checked only when asked for.
        """
        wanted = {
            name: path
            for name, path in self.bin_dirs.items()
            if autoscalers or name not in self.autoscaler_bin_dirs
        }
        missing = [n for n, d in wanted.items() if not os.access(d / n, os.X_OK)]
        if not self.kwok_stages.is_file():
            missing.append(f"kwok stages ({self.kwok_stages})")
        if autoscalers:
            for crds in (self.keda_crds, self.karpenter_crds, self.karpenter_kwok_crds):
                if not crds.is_dir():
                    missing.append(f"CRDs ({crds})")
        if missing:
            raise ToolMissingError(
                f"cluster tools missing from {self.cache}: {', '.join(missing)}.\n{BUILD_HINT}"
            )
