"""Generate the Python stubs of externalscaler.proto with grpcio-tools (run after updating the proto).

`python -m genjob_operator.externalscaler.regenerate` rewrites the committed `*_pb2*` files;
`--check` only reports whether they are current (tests/operator/test_operator_push_stubs.py).
To update the proto: `go mod download -json github.com/kedacore/keda/v2@<version>` prints the
module's Dir; copy `pkg/scalers/externalscaler/externalscaler.proto` from there, then regenerate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1] / "operator"  # the proto's path below it names the module
HERE = SOURCE_ROOT / "genjob_operator" / "externalscaler"
PROTO = HERE / "externalscaler.proto"
GENERATED = ("externalscaler_pb2.py", "externalscaler_pb2.pyi", "externalscaler_pb2_grpc.py")


def generate() -> dict[str, bytes]:
    """The generated files' contents, by file name."""
    from grpc_tools import protoc  # a build-time tool (dev extra), not a runtime dependency

    relative = PROTO.relative_to(SOURCE_ROOT)
    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{SOURCE_ROOT}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                str(relative),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed on {relative} (exit {code})")
        produced = Path(out) / relative.parent
        return {name: (produced / name).read_bytes() for name in GENERATED}


def stale_files() -> list[str]:
    return [name for name, data in generate().items() if (HERE / name).read_bytes() != data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {HERE / name}; run python hack/externalscaler_stubs.py")
        return 1 if stale else 0
    for name, data in generate().items():
        (HERE / name).write_bytes(data)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
