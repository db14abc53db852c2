"""KEDA's external-push scaler API of the operator, through a real gRPC client (the same
round-robin service config KEDA's client uses), over mutual TLS, against a real redis-server:
activation the moment a job is admitted, deactivation from the reaper's counts, the standby's
answers, leader failover (the stream ends cleanly and the retry reaches the new leader), and
clients without KEDA's certificate refused."""

from __future__ import annotations

import datetime as dt
import importlib.util
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from genjob.connect import job_queue, redis_client
from genjob_operator.admission_flow import Admitter
from genjob_operator.externalscaler import externalscaler_pb2 as pb
from genjob_operator.externalscaler import externalscaler_pb2_grpc as pb_grpc
from genjob_operator.kube import TenantResolver
from genjob_operator.push_scaler import PushScalerServer, metric_name
from genjob_operator.reaper import Reaper
from genjob_operator.tier_activity import TierActivity

from .conftest import SyncEvents, job_body

KEDA_SERVICE_CONFIG = '{"loadBalancingConfig": [{"round_robin":{}}]}'  # KEDA's grpcConfig


# -- certificates ------------------------------------------------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


class Pki:
    """A CA with a server certificate (the operator's) and a client certificate (KEDA's)."""

    def __init__(self, root: Path) -> None:
        ca_key = _key()
        self.ca = _cert("genjob-push-ca", ca_key, None)
        server_key, client_key = _key(), _key()
        server = _cert("genjob-operator-push", server_key, (self.ca, ca_key))
        client = _cert("keda", client_key, (self.ca, ca_key))
        self.server_dir = root / "server"
        self.server_dir.mkdir()
        (self.server_dir / "ca.crt").write_bytes(_pem(self.ca))
        (self.server_dir / "tls.crt").write_bytes(_pem(server))
        (self.server_dir / "tls.key").write_bytes(_pem(server_key))
        self.client_cert, self.client_key = _pem(client), _pem(client_key)

    def credentials(self, with_client_cert: bool = True) -> grpc.ChannelCredentials:
        if with_client_cert:
            return grpc.ssl_channel_credentials(_pem(self.ca), self.client_key, self.client_cert)
        return grpc.ssl_channel_credentials(_pem(self.ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("push-pki"))


# -- servers and clients ---------------------------------------------------------------------
@pytest.fixture
def servers(settings, pki) -> Iterator[list[PushScalerServer]]:
    """Two replicas' push servers (both standbys until a test makes one lead)."""
    started = [PushScalerServer(list(settings.tiers), 0, pki.server_dir, host="127.0.0.1") for _ in range(2)]
    for s in started:
        s.start()
    yield started
    for s in started:
        s.stop(grace=0)


def channel(pki: Pki, *servers: PushScalerServer) -> grpc.Channel:
    target = "ipv4:" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return grpc.secure_channel(
        target,
        pki.credentials(),
        options=[
            ("grpc.service_config", KEDA_SERVICE_CONFIG),
            ("grpc.ssl_target_name_override", "localhost"),
        ],
    )


def ref(tier: str = "free") -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=f"genjob-worker-{tier}", namespace="genjob", scalerMetadata={"tier": tier})


def admit_one(settings, kube, cache, metrics, activity: TierActivity, name: str = "a") -> None:
    """The operator's real admission path: finalizer, then enqueue on the tier's Redis list."""
    queue = job_queue(settings, redis_client(settings))
    admitter = Admitter(
        cache,
        kube,
        queue,
        settings,
        TenantResolver(kube, settings),
        SyncEvents(kube),
        metrics,
        workers=1,
        on_enqueued=activity.note_work,
    )
    view = kube.add(job_body(name))
    cache.observe(view)
    admitter.pass_once()


# -- tests ---------------------------------------------------------------------------------------
def test_generated_stubs_are_current() -> None:
    """The committed *_pb2* files are what grpcio-tools makes of the committed proto."""
    path = Path(__file__).resolve().parents[2] / "hack" / "externalscaler_stubs.py"
    spec = importlib.util.spec_from_file_location("externalscaler_stubs", path)
    assert spec is not None and spec.loader is not None
    stubs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stubs)
    assert stubs.stale_files() == []


def test_tier_activity_counts_read_before_an_enqueue_do_not_undo_it() -> None:
    activity = TierActivity(["free", "pro"])
    read_from = activity.begin_read()
    activity.note_work("free")
    activity.observe({"free": 0, "pro": 0}, read_from)  # counts read before the job reached Redis
    assert activity.is_active("free")
    activity.observe({"free": 0, "pro": 0}, activity.begin_read())
    assert not activity.is_active("free")
    activity.observe({"free": 0, "pro": 2}, activity.begin_read())
    assert activity.is_active("pro")


def test_leader_pushes_active_when_a_job_is_admitted_and_inactive_when_the_tier_drains(
    settings, redis_server, servers, pki, kube, cache, metrics
) -> None:
    with redis_server.client() as fresh:
        fresh.flushdb()  # other tests leave jobs in this session-wide server
    leader = servers[0]
    activity = TierActivity(settings.tiers)
    leader.lead(activity)
    stub = pb_grpc.ExternalScalerStub(channel(pki, leader))
    stream = stub.StreamIsActive(ref("free"), timeout=30)
    assert next(stream).result is False  # the current state, sent when the stream opens
    assert stub.IsActive(ref("free")).result is False

    admit_one(settings, kube, cache, metrics, activity)
    assert next(stream).result is True  # no poll in between: pushed from the admission path
    assert stub.IsActive(ref("free")).result is True
    value = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("free"), metricName=metric_name("free")))
    assert value.metricValues[0].metricValueFloat == 1.0
    assert stub.IsActive(ref("pro")).result is False

    queue = job_queue(settings, redis_client(settings))
    reaper = Reaper(queue, cache, metrics, interval=1, namespaces=[], activity=activity)
    reaper.pass_once()
    assert stub.IsActive(ref("free")).result is True  # still pending
    (job,) = queue.claim(["free"], "w1")
    reaper.pass_once()
    assert stub.IsActive(ref("free")).result is True  # in flight keeps it active
    queue.complete(job, {"images": []})
    reaper.pass_once()
    assert next(stream).result is False
    stream.cancel()


def test_metric_spec_is_static_and_served_by_a_standby(settings, servers, pki) -> None:
    stub = pb_grpc.ExternalScalerStub(channel(pki, servers[1]))
    spec = stub.GetMetricSpec(ref("pro"))
    assert [(m.metricName, m.targetSizeFloat) for m in spec.metricSpecs] == [(metric_name("pro"), 1.0)]
    stream = stub.StreamMetricSpec(ref("pro"), timeout=30)
    assert next(stream) == spec  # sent when the stream opens, so KEDA re-reads it after an outage
    stream.cancel()


def test_standby_answers_inactive_and_ends_the_stream_without_error(settings, servers, pki) -> None:
    standby = servers[1]
    stub = pb_grpc.ExternalScalerStub(channel(pki, standby))
    # The leader elsewhere knows the tier has work; the standby does not claim it.
    assert stub.IsActive(ref("free")).result is False
    assert list(stub.StreamIsActive(ref("free"), timeout=10)) == []  # ended cleanly (KEDA: io.EOF)


def test_failover_ends_the_leaders_stream_and_the_retry_reaches_the_new_leader(
    settings, servers, pki
) -> None:
    old, new = servers
    old_activity = TierActivity(settings.tiers)
    old_activity.note_work("free")
    old.lead(old_activity)
    stub = pb_grpc.ExternalScalerStub(channel(pki, old, new))

    def open_stream_until_served(attempts: int = 10) -> Iterator[pb.IsActiveResponse]:
        """What KEDA does: open the stream; when it ends without an answer, open it again."""
        for _ in range(attempts):
            stream = stub.StreamIsActive(ref("free"), timeout=30)
            first = next(stream, None)
            if first is not None:
                yield first
                yield from stream
                return
        raise AssertionError(f"no replica served the stream in {attempts} attempts")

    stream = open_stream_until_served()
    assert next(stream).result is True
    old.stand_by()  # the old leader steps down (lost or released its Lease)
    assert list(stream) == []  # the stream ended cleanly, so KEDA retries after 2 s

    new_activity = TierActivity(settings.tiers)
    new.lead(new_activity)
    new_activity.note_work("free")  # the new leader's first reaper pass finds the job
    assert next(open_stream_until_served()).result is True
    answers = {
        s.port: pb_grpc.ExternalScalerStub(channel(pki, s)).IsActive(ref("free")).result for s in servers
    }
    assert answers == {old.port: False, new.port: True}


def test_unknown_tier_is_refused_with_a_clear_error(settings, servers, pki) -> None:
    stub = pb_grpc.ExternalScalerStub(channel(pki, servers[0]))
    with pytest.raises(grpc.RpcError) as err:
        stub.IsActive(ref("gold"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tier='gold'" in err.value.details() and "metadata.tier" in err.value.details()


def test_clients_without_kedas_certificate_are_refused(settings, servers, pki, tmp_path) -> None:
    """Attack: a pod that reaches the port (NetworkPolicy aside) without KEDA's client
    certificate, or with one from another CA, gets no answer."""
    server = servers[0]
    server.lead(TierActivity(settings.tiers))
    options = [("grpc.ssl_target_name_override", "localhost")]
    no_cert = grpc.secure_channel(f"127.0.0.1:{server.port}", pki.credentials(False), options=options)
    other = Pki(tmp_path)
    foreign = grpc.ssl_channel_credentials(_pem(pki.ca), other.client_key, other.client_cert)
    foreign_cert = grpc.secure_channel(f"127.0.0.1:{server.port}", foreign, options=options)
    plaintext = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    for ch in (no_cert, foreign_cert, plaintext):
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.ExternalScalerStub(ch).IsActive(ref("free"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_stream_opened_on_a_tier_with_work_says_active_twice(settings, servers, pki) -> None:
    """KEDA (v2.21, on the test cluster) does not scale on the state a new stream starts with: a
    job queued while KEDA was (re)connecting after an operator restart waited for its next poll
    (test_autoscaling_coldstart). The leader repeats "active" once, a moment later."""
    leader = servers[0]
    activity = TierActivity(settings.tiers)
    activity.note_work("free")
    leader.lead(activity)
    stub = pb_grpc.ExternalScalerStub(channel(pki, leader))
    stream = stub.StreamIsActive(ref("free"), timeout=10)
    assert next(stream).result is True
    assert next(stream).result is True  # the repeat KEDA acts on
    stream.cancel()
    idle = stub.StreamIsActive(ref("pro"), timeout=3)
    assert next(idle).result is False
    with pytest.raises(grpc.RpcError):  # an idle tier's state is said once
        next(idle)
