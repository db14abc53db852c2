"""The chart's GenerationJob tenancy ValidatingAdmissionPolicy on a real kube-apiserver.

A tenant who may create GenerationJobs in its namespace (a ServiceAccount with a Role on
generationjobs, as a platform team would grant) tries to run as another tenant and to abuse
genjob's finalizer; the API server refuses both with the policy's message. The operator's
ServiceAccount (the chart's, in the release namespace) may add and remove the finalizer.
The operator checks the same rules itself (tests/operator/test_operator_tenancy.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from genjob.crd import GROUP, PLURAL, VERSION

from .conftest import wait_for

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "charts" / "genjob"
RELEASE = "gjtenancy"
POLICY = f"{RELEASE}-genjob-generationjob-tenancy"
FINALIZER = "genjob.io/cleanup"
MERGE = "application/merge-patch+json"


@dataclass
class Setup:
    labelled: str  # namespace labelled genjob.io/tenant=acme
    gateway: str  # genjob-<tenant>: the gateway's namespace of that tenant (api.namespaceTemplate)
    shared: str  # in operator.ownerNamespaces: may act for any tenant
    gateway_tenant: str
    tenant: Any  # CustomObjectsApi as a tenant's ServiceAccount
    operator: Any  # CustomObjectsApi as the chart's operator ServiceAccount


def job(name: str, finalizers: list[str] | None = None, **spec: Any) -> dict:
    meta: dict[str, Any] = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GenerationJob",
        "metadata": meta,
        "spec": {"tier": "free", "prompt": "a red fox", **spec},
    }


def refused(call: Any) -> tuple[int, str] | None:
    """None when the call passes, else (HTTP status, message)."""
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as exc:
        return exc.status, json.loads(exc.body).get("message", exc.body)
    return None


@pytest.fixture(scope="module")
def setup(cluster, genjob_crd) -> Iterator[Setup]:
    from kubernetes import client, config

    suffix = uuid.uuid4().hex[:8]
    release_ns, labelled, shared = f"gjrel-{suffix}", f"team-{suffix}", f"shared-{suffix}"
    gateway_tenant = f"gw{suffix}"
    gateway = f"genjob-{gateway_tenant}"
    namespaces = [release_ns, labelled, shared, gateway]
    rendered = cluster.helm(
        "template", RELEASE, str(CHART), "-n", release_ns,
        "--show-only", "templates/operator/serviceaccount.yaml",
        "--show-only", "templates/operator/generationjob-policy.yaml",
        "--set-json", f'operator.ownerNamespaces={{"{shared}": ["*"]}}',
    ).stdout  # fmt: skip
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    assert kinds == ["ServiceAccount", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    try:
        for ns in namespaces:
            cluster.kubectl("create", "namespace", ns)
        cluster.kubectl("label", "namespace", labelled, "genjob.io/tenant=acme")
        cluster.kubectl("apply", "-n", release_ns, "-f", "-", input=rendered)
        operator_sa = f"{RELEASE}-genjob-operator"
        # One user (a ServiceAccount of acme's namespace) who may edit GenerationJobs in all three.
        cluster.kubectl("create", "serviceaccount", "tenant", "-n", labelled)
        for ns in (labelled, shared, gateway):
            cluster.kubectl(
                "create", "role", "jobs", "-n", ns, "--verb=get,list,create,update,patch,delete",
                "--resource=generationjobs.genjob.io",
            )  # fmt: skip
            cluster.kubectl(
                "create", "rolebinding", "jobs", "-n", ns, "--role=jobs",
                f"--serviceaccount={labelled}:tenant", f"--serviceaccount={release_ns}:{operator_sa}",
            )  # fmt: skip

        def api_as(namespace: str, account: str) -> Any:
            token = cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()
            cfg = client.Configuration()
            config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
            cfg.cert_file = cfg.key_file = None
            cfg.api_key = {"authorization": f"Bearer {token}"}
            return client.CustomObjectsApi(client.ApiClient(cfg))

        tenant = api_as(labelled, "tenant")
        probe = job("probe", owner="globex")
        wait_for(
            "the GenerationJob tenancy policy to be enforced",
            lambda: (
                refused(
                    lambda: tenant.create_namespaced_custom_object(
                        GROUP, VERSION, labelled, PLURAL, probe, dry_run="All"
                    )
                )
                is not None
            ),
            60,
        )
        yield Setup(labelled, gateway, shared, gateway_tenant, tenant, api_as(release_ns, operator_sa))
    finally:
        for ns in namespaces:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl(
            "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", POLICY, check=False
        )


def create(api: Any, namespace: str, body: dict) -> tuple[int, str] | None:
    return refused(lambda: api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))


def test_an_owner_naming_another_tenant_is_refused(setup: Setup) -> None:
    """Attack: a tenant with RBAC in acme's namespace names globex as the owner."""
    error = create(setup.tenant, setup.labelled, job("forged", owner="globex"))
    assert error is not None and error[0] == 403, error
    assert f"spec.owner globex is not the tenant of namespace {setup.labelled} (acme)" in error[1]
    assert create(setup.tenant, setup.labelled, job("own", owner="acme")) is None
    assert create(setup.tenant, setup.labelled, job("plain")) is None


def test_a_gateway_namespace_is_its_tenants(setup: Setup) -> None:
    """genjob-<tenant> (api.namespaceTemplate) is <tenant>'s without a label, as the operator says."""
    assert create(setup.tenant, setup.gateway, job("own", owner=setup.gateway_tenant)) is None
    error = create(setup.tenant, setup.gateway, job("forged", owner="acme"))
    assert error is not None and error[0] == 403 and f"({setup.gateway_tenant})" in error[1], error


def test_a_namespace_allowed_to_act_for_others_may_name_any_tenant(setup: Setup) -> None:
    assert create(setup.tenant, setup.shared, job("for-globex", owner="globex")) is None


def test_only_the_operator_may_set_or_remove_the_finalizer(setup: Setup) -> None:
    """Attacks: create a job already carrying genjob's finalizer (to look admitted), and strip it
    from an admitted job (to delete the object while its work runs on)."""
    ns, tenant, operator = setup.labelled, setup.tenant, setup.operator
    error = create(tenant, ns, job("preset", finalizers=[FINALIZER]))
    assert error is not None and error[0] == 403, error
    assert f"may not be created with the finalizer {FINALIZER}" in error[1]

    assert create(tenant, ns, job("admitted")) is None
    add = {"metadata": {"finalizers": [FINALIZER]}}
    error = refused(
        lambda: tenant.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "admitted", add)
    )
    assert error is not None and error[0] == 403 and "only the genjob operator may add" in error[1], error
    operator.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "admitted", add)

    strip = {"metadata": {"finalizers": None}}
    error = refused(
        lambda: tenant.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "admitted", strip)
    )
    assert error is not None and error[0] == 403 and "only the genjob operator may remove" in error[1], error
    # Other metadata stays the tenant's; deleting waits for the operator to release the job.
    tenant.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "admitted", {"metadata": {"labels": {"team": "a"}}}
    )
    tenant.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "admitted")
    error = refused(
        lambda: tenant.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "admitted", strip)
    )
    assert error is not None and error[0] == 403, error
    held = tenant.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "admitted")
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == [FINALIZER]
    operator.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "admitted", strip)
    gone = refused(lambda: tenant.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "admitted"))
    assert gone is not None and gone[0] == 404
