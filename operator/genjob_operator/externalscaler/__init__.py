"""KEDA's external scaler gRPC API (externalscaler.proto of KEDA v2.21.0) and its generated stubs.

`externalscaler.proto` is a verbatim copy of `pkg/scalers/externalscaler/externalscaler.proto`
from the Go module `github.com/kedacore/keda/v2@v2.21.0`; the `*_pb2*` files are generated from
it by `python hack/externalscaler_stubs.py` (grpcio-tools, pinned in pyproject.toml). A test
regenerates them and fails when the committed files are stale.
"""
