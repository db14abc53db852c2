"""KEDA's external-push scaler API, served by every operator replica; only the leader is active.

Each tier's ScaledObject has an `external-push` trigger (metadata `tier`) next to its two redis
triggers. KEDA keeps one `StreamIsActive` stream per ScaledObject open; when a job is queued for
an idle tier the leader sends `true` on it at once, and KEDA scales the pool from zero without
waiting for its next poll (KEDA ignores `false` on the stream: scale-in stays with the redis
triggers and cooldownPeriod). The replica count always comes from the redis triggers: the chart's
`scalingModifiers.formula` does not use this trigger's metric.

A new stream starts with the tier's current state; if that is "active" it is sent again about a
second later: KEDA (v2.21) did not scale a pool at zero on the first message of a stream it
(re)opened after an operator restart, only on a later one (seen on the test cluster).

Leadership (`lead(activity)` / `stand_by()`): only the replica that holds the Lease knows which
tiers just got work. A standby answers `IsActive` false and ends a `StreamIsActive` stream at once,
without an error; so does a leader stepping down. KEDA retries an ended stream after 2 s (its
backoff restarts at 2 s after a clean end, but doubles up to a minute after an error), and its
client balances round-robin over the addresses of the chart's headless Service, so the retry
reaches the other replica: within about 2 s of a new leader taking over, KEDA's stream is with it.

`GetMetricSpec`/`StreamMetricSpec` are static and answered by every replica: KEDA needs the
metric name in the ScaledObject's status before it acts on a push, and the spec sent on a new
`StreamMetricSpec` stream makes KEDA re-read it even if the operator was not up when the
ScaledObject was created.

TLS (`tls_dir` with tls.crt, tls.key, ca.crt): the server requires a client certificate signed
by ca.crt, i.e. KEDA's TriggerAuthentication (`caCert`, `tlsClientCert`, `tlsClientKey`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import structlog

from genjob.settings import GenjobSettings
from genjob_operator.externalscaler import externalscaler_pb2 as pb
from genjob_operator.externalscaler import externalscaler_pb2_grpc as pb_grpc
from genjob_operator.tier_activity import TierActivity

log = structlog.get_logger("genjob.operator.push")

METRIC_SUFFIX = "push-activation"
WAIT_SLICE_SECONDS = 1.0  # how often an idle stream checks that its client is still there


def metric_name(tier: str) -> str:
    return f"genjob-{tier}-{METRIC_SUFFIX}"


class PushScalerService(pb_grpc.ExternalScalerServicer):
    """The four calls KEDA makes (plus StreamMetricSpec), per ScaledObjectRef's `tier`."""

    def __init__(self, tiers: list[str]) -> None:
        self.tiers = list(tiers)
        self._activity: TierActivity | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- leadership ------------------------------------------------------------------------
    def lead(self, activity: TierActivity) -> None:
        with self._lock:
            self._activity = activity
        log.info("push scaler active (leader)")

    def stand_by(self) -> None:
        """Stop answering as the leader; open streams end (KEDA reconnects to the new leader)."""
        with self._lock:
            activity, self._activity = self._activity, None
        if activity is not None:
            activity.close()

    def stop(self) -> None:
        self._stopping.set()
        self.stand_by()

    def _leader_activity(self) -> TierActivity | None:
        with self._lock:
            activity = self._activity
        return None if activity is None or activity.closed else activity

    # -- requests ----------------------------------------------------------------------------
    def _tier(self, ref: pb.ScaledObjectRef, context: grpc.ServicerContext) -> str:
        tier = str(ref.scalerMetadata.get("tier", ""))
        if tier not in self.tiers:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ScaledObject {ref.namespace}/{ref.name}: trigger metadata tier={tier!r} is not one of "
                f"the operator's tiers {self.tiers}; set the external-push trigger's metadata.tier",
            )
        return tier

    def _active(self, tier: str) -> bool:
        activity = self._leader_activity()
        return activity is not None and activity.is_active(tier)

    def IsActive(self, request: pb.ScaledObjectRef, context: grpc.ServicerContext) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=self._active(self._tier(request, context)))

    def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> Iterator[pb.IsActiveResponse]:
        tier = self._tier(request, context)
        activity = self._leader_activity()
        if activity is None:
            return  # a standby: end the stream cleanly so KEDA retries (on the next address) in 2 s
        log.info("KEDA stream opened", tier=tier, scaled_object=f"{request.namespace}/{request.name}")
        seen: bool | None = None
        repeat = False
        while context.is_active() and not self._stopping.is_set():
            state = activity.wait_change(tier, seen, WAIT_SLICE_SECONDS)
            if state is None:
                log.info("push stream ended: no longer the leader", tier=tier)
                return
            if state != seen or repeat:
                # KEDA (v2.21) does not scale on the state a new stream starts with: a tier that
                # got work while KEDA was (re)connecting is told "active" again a moment later.
                repeat = seen is None and state
                seen = state
                yield pb.IsActiveResponse(result=state)

    def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        return self._metric_spec(self._tier(request, context))

    def StreamMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> Iterator[pb.GetMetricSpecResponse]:
        yield self._metric_spec(self._tier(request, context))
        while context.is_active() and not self._stopping.wait(WAIT_SLICE_SECONDS):
            pass

    def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.ServicerContext
    ) -> pb.GetMetricsResponse:
        tier = self._tier(request.scaledObjectRef, context)
        value = 1.0 if self._active(tier) else 0.0
        return pb.GetMetricsResponse(
            metricValues=[
                pb.MetricValue(metricName=metric_name(tier), metricValue=int(value), metricValueFloat=value)
            ]
        )

    @staticmethod
    def _metric_spec(tier: str) -> pb.GetMetricSpecResponse:
        # One replica while the tier has work; used only if a ScaledObject has no formula.
        return pb.GetMetricSpecResponse(
            metricSpecs=[pb.MetricSpec(metricName=metric_name(tier), targetSize=1, targetSizeFloat=1.0)]
        )


def server_credentials(tls_dir: Path) -> grpc.ServerCredentials:
    """TLS with a required client certificate signed by `tls_dir/ca.crt`."""
    files = {name: tls_dir / name for name in ("tls.crt", "tls.key", "ca.crt")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"push scaler TLS: missing {', '.join(missing)}; mount the chart's push TLS Secret "
            "there or unset operator.push_tls_dir (plaintext, for local runs only)"
        )
    return grpc.ssl_server_credentials(
        [(files["tls.key"].read_bytes(), files["tls.crt"].read_bytes())],
        root_certificates=files["ca.crt"].read_bytes(),
        require_client_auth=True,
    )


class PushScalerServer:
    """The gRPC server around `PushScalerService`; starts as a standby."""

    def __init__(self, tiers: list[str], port: int, tls_dir: Path | None, host: str = "[::]") -> None:
        self.service = PushScalerService(tiers)
        # Two streams per ScaledObject (StreamIsActive, StreamMetricSpec), room for a second
        # KEDA connection during its own failover, and the unary calls. More are refused
        # (RESOURCE_EXHAUSTED) instead of queued behind held streams.
        threads = 8 + 4 * len(tiers)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="push"),
            maximum_concurrent_rpcs=threads,
        )
        pb_grpc.add_ExternalScalerServicer_to_server(self.service, self._server)
        address = f"{host}:{port}"
        if tls_dir is not None:
            self.port: int = self._server.add_secure_port(address, server_credentials(tls_dir))
        else:
            self.port = self._server.add_insecure_port(address)
        self.tls = tls_dir is not None

    def start(self) -> int:
        self._server.start()
        log.info("push scaler listening", port=self.port, tls=self.tls)
        return self.port

    def lead(self, activity: TierActivity) -> None:
        self.service.lead(activity)

    def stand_by(self) -> None:
        self.service.stand_by()

    def stop(self, grace: float = 2.0) -> None:
        """End every stream cleanly, then stop serving."""
        self.service.stop()
        self._server.stop(grace).wait()


def push_server_from_settings(settings: GenjobSettings) -> PushScalerServer | None:
    op = settings.operator
    if not op.push_port:
        return None
    return PushScalerServer(list(settings.tiers), op.push_port, op.push_tls_dir)
