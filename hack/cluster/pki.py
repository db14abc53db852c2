"""Certificates and keys for the test control plane (hack/cluster/harness.py).

Writes, into one directory, everything a single-node loopback control plane needs:

- ``ca.crt/key``: the cluster CA; it signs the API server's serving cert and every
  client cert, and is the ``--client-ca-file``.
- ``apiserver.crt/key``: serving cert for 127.0.0.1, localhost and the in-cluster names.
- ``admin``, ``controller-manager``, ``scheduler``, ``kwok`` client certs (CN/O chosen
  so the API server's bootstrap RBAC roles apply: ``system:masters`` for admin and kwok).
- ``sa.key/pub``: the service-account token signing key pair.
- ``front-proxy-ca.crt/key`` and ``front-proxy-client.crt/key``: the aggregation layer's
  request-header CA and the client the API server uses to reach aggregated APIs (KEDA's
  metrics server needs these).

``generate_keda()`` writes KEDA's own CA and mutual-TLS pair into a separate directory.

ECDSA P-256 keys keep generation in the milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)
SERVICE_IP = "10.0.0.1"  # first address of the harness's --service-cluster-ip-range
API_DNS_NAMES = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]
CLIENTS = {
    # file stem: (common name, organisations)
    "admin": ("genjob-admin", ["system:masters"]),
    "controller-manager": ("system:kube-controller-manager", []),
    "scheduler": ("system:kube-scheduler", []),
    "kwok": ("kwok", ["system:masters"]),
}


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, loaded in memory."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str, orgs: list[str] | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs or []]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def new_ca(common_name: str) -> KeyPair:
    """A self-signed CA certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def new_leaf(
    ca: KeyPair,
    common_name: str,
    orgs: list[str] | None = None,
    *,
    server: bool = False,
    client: bool | None = None,
    dns_names: list[str] | None = None,
    ips: list[str] | None = None,
) -> KeyPair:
    """A certificate signed by ``ca``: a client cert, or a serving cert when ``server``
    (``client=True`` with ``server=True``: both, as KEDA's mutual-TLS gRPC pair needs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    client = not server if client is None else client
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        _builder(_name(common_name, orgs), ca.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names or []]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_pair(directory: Path, stem: str, pair: KeyPair) -> None:
    """Write ``<stem>.crt`` and ``<stem>.key`` (the key readable by its owner only)."""
    (directory / f"{stem}.crt").write_bytes(pair.cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(_key_pem(pair.key))
    key_path.chmod(0o600)


def write_service_account_keys(directory: Path) -> None:
    """Write ``sa.key`` (signs service-account tokens) and ``sa.pub`` (verifies them)."""
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "sa.key").write_bytes(_key_pem(key))
    (directory / "sa.key").chmod(0o600)
    (directory / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def generate_keda(directory: Path, dns_names: list[str]) -> Path:
    """KEDA's cert dir: ``ca.crt`` plus one ``tls.crt/key`` that both its operator's gRPC server
    and its metrics adapter (gRPC client, and the HTTPS server behind the APIService) use."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_ca("genjob-test-keda-ca")
    write_pair(directory, "ca", ca)
    pair = new_leaf(ca, "keda", server=True, client=True, dns_names=dns_names, ips=["127.0.0.1"])
    write_pair(directory, "tls", pair)
    return directory


def generate(directory: Path) -> Path:
    """Create every certificate and key the control plane needs in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_ca("genjob-test-ca")
    write_pair(directory, "ca", ca)
    serving = new_leaf(
        ca, "kube-apiserver", server=True, dns_names=API_DNS_NAMES, ips=["127.0.0.1", SERVICE_IP]
    )
    write_pair(directory, "apiserver", serving)
    for stem, (common_name, orgs) in CLIENTS.items():
        write_pair(directory, stem, new_leaf(ca, common_name, orgs))
    front_proxy_ca = new_ca("genjob-test-front-proxy-ca")
    write_pair(directory, "front-proxy-ca", front_proxy_ca)
    write_pair(directory, "front-proxy-client", new_leaf(front_proxy_ca, "front-proxy-client"))
    write_service_account_keys(directory)
    return directory
