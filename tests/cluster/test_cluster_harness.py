"""Tests of the harness itself: certificates, kubeconfig, error messages, teardown.

Most need no binaries; the teardown test starts a second, short-lived control plane
and checks that stopping it leaves no process and no etcd data behind.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_signs_serving_and_client_certs_for_rbac(harness_module, tmp_path):
    """The serving cert covers loopback; client certs carry the CN/O that RBAC binds."""
    harness_module.pki.generate(tmp_path)
    ca = _cert(tmp_path / "ca.crt")
    serving = _cert(tmp_path / "apiserver.crt")
    ca.public_key().verify(
        serving.signature, serving.tbs_certificate_bytes, ec.ECDSA(serving.signature_hash_algorithm)
    )  # raises if not signed by ca
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]

    admin = _cert(tmp_path / "admin.crt")
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage

    proxy = _cert(tmp_path / "front-proxy-client.crt")
    assert proxy.issuer == _cert(tmp_path / "front-proxy-ca.crt").subject
    assert proxy.issuer != ca.subject
    assert oct((tmp_path / "sa.key").stat().st_mode & 0o777) == "0o600"


def test_kubeconfig_embeds_credentials(harness_module, tmp_path):
    """The written kubeconfig is self-contained: it still works if the pki dir is gone."""
    harness_module.pki.generate(tmp_path)
    config = harness_module.kubeconfig_dict("https://127.0.0.1:1234", tmp_path, "admin")
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:1234"
    assert "certificate-authority-data" in cluster and "client-key-data" in config["users"][0]["user"]
    assert yaml.safe_load(yaml.safe_dump(config))["current-context"] == "genjob-test"


def test_missing_binary_error_says_to_run_make_tools(harness_module, tmp_path):
    """An empty tools cache fails with the missing names and the command that fixes it."""
    tools = harness_module.Tools(tmp_path, harness_module.read_versions())
    with pytest.raises(harness_module.ToolMissingError) as missing:
        tools.check()
    assert "kube-apiserver" in str(missing.value) and "make tools" in str(missing.value)
    with pytest.raises(harness_module.ToolMissingError, match="make tools"):
        tools.path("etcd")


def test_taken_port_is_reported_with_a_way_out(harness_module):
    """A fixed port that is taken is refused up front, naming the port and the component."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(harness_module.PortInUseError) as taken:
            harness_module.Ports.fixed(api=port, etcd_client=harness_module.free_port())
    assert str(port) in str(taken.value) and "kube-apiserver" in str(taken.value)
    assert "cluster-down" in str(taken.value)


def test_cli_down_without_a_cluster_is_harmless(harness_module, tmp_path):
    """`harness.py down` on an empty state dir succeeds; `status` says nothing is up."""
    assert harness_module.main(["--state-dir", str(tmp_path), "down"]) == 0
    assert harness_module.main(["--state-dir", str(tmp_path), "status"]) == 1


def test_stop_ends_every_process_and_removes_etcd_data(harness_module, cluster, tmp_path):
    """A second control plane (dynamic ports, beside the session one) stops without leftovers."""
    control_plane = harness_module.Cluster(tmp_path / "second", tools=cluster.tools, die_with_parent=True)
    control_plane.start()
    try:
        pids = {
            name: int((control_plane.pid_dir / f"{name}.pid").read_text())
            for name in harness_module.COMPONENTS
        }
        etcd_data = control_plane.etcd_data
        assert etcd_data.is_dir()
        nodes = control_plane.kubectl("get", "nodes", "-o", "name").stdout.split()
        assert nodes == [f"node/{harness_module.DEFAULT_NODE}"]
    finally:
        control_plane.stop()
    alive = [name for name, pid in pids.items() if harness_module.alive(pid)]
    assert alive == []
    assert not etcd_data.exists()
    assert list(control_plane.pid_dir.glob("*.pid")) == []
    # The session's own cluster is untouched by the second one's teardown.
    assert cluster.kubectl("get", "--raw", "/readyz").stdout == "ok"
