"""charts/genjob renders what genjob's processes, KEDA and Kubernetes expect, for every ci variant.

Needs only the pinned helm (no cluster). The cluster tier (tests/cluster/test_cluster_chart_install.py)
then dry-runs and installs the same renders on a real API server.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from genjob.keys import RedisKeys
from genjob.settings import GenjobSettings
from genjob.tiers import TierConfig, TierLimits, consumption_order

VARIANTS = ["default", "all-tiers", "no-keda", "external-redis", "minimal", "local-cluster", "redis-sentinel"]


def workers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]


def tier_of(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["genjob.io/tier"]


def config_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config")]
    return yaml.safe_load(cm["data"]["config.yaml"])


def settings_for(config: dict[str, Any], container: dict[str, Any], tmp_path, monkeypatch) -> GenjobSettings:
    """GenjobSettings exactly as the container builds them: config file plus its GENJOB_* env."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    for name in [n for n in __import__("os").environ if n.startswith("GENJOB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GENJOB_CONFIG_FILE", str(path))
    for env in container.get("env", []):
        if env["name"].startswith("GENJOB_") and env["name"] != "GENJOB_CONFIG_FILE":
            monkeypatch.setenv(env["name"], env.get("value", "secret-from-a-secretKeyRef"))
    return GenjobSettings()


# ---------------------------------------------------------------- lint and schema


@pytest.mark.parametrize("values", [None, "all-tiers", "no-keda", "external-redis", "minimal"])
def test_helm_lint_strict_passes(chartlib, values) -> None:
    """`helm lint --strict` accepts the defaults and every ci/*-values.yaml."""
    args = ["lint", "--strict", str(chartlib.CHART_DIR)]
    if values:
        args += ["-f", str(chartlib.CHART_DIR / "ci" / f"{values}-values.yaml")]
    result = chartlib.helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ci_variant_is_tested(chartlib) -> None:
    assert sorted(v.name.removesuffix("-values.yaml") for v in chartlib.CI_VALUES) == sorted(VARIANTS[1:])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["tiers.gold.pool.replicas=1"], "missing property 'queue'"),
        (["worker.replicas=-1"], "/worker/replicas"),
        (["tiers.pro.pool.keda.maxReplicas=0"], "/tiers/pro/pool/keda/maxReplicas"),
        (["tiers.pro.queue.weight=0"], "/tiers/pro/queue/weight"),
        (["tiers.pro.queue.limits.max_width=1004"], "multipleOf"),
        (["tiers.pro.queue.priority=3"], "additional properties 'priority' not allowed"),
        (["tiers.Gold.queue.weight=1"], "'Gold' does not match pattern"),
        (["worker.capacityType=reserved"], "/worker/capacityType"),
        (["redis.appendfsync=sometimes"], "/redis/appendfsync"),
        (["redis.keyPrefix=has space"], "/redis/keyPrefix"),
        (["api.mode=hybrid"], "/api/mode"),
        (["operator.replicas=9"], "/operator/replicas"),
        (["externalRedis.url=http://x"], "/externalRedis/url"),
        (["unknownTopLevel=1"], "additional properties 'unknownTopLevel' not allowed"),
    ],
)
def test_schema_rejects_bad_values(chartlib, sets, message) -> None:
    """values.schema.json refuses bad input before anything renders."""
    assert message in chartlib.render_error(sets=sets)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["config.defaultModel=nope"], 'config.defaultModel "nope" is not a key of config.models'),
        (["tiers.pro.queue.spill_over_to={gold}"], 'tiers.pro.queue.spill_over_to names unknown tier "gold"'),
        (["tiers.pro.pool.terminationGracePeriodSeconds=300"], "tier pro runs on Spot"),
        (["worker.drainMarginSeconds=200"], "must exceed drainMarginSeconds"),
        (
            ["tiers.free.pool.keda.minReplicas=3", "tiers.free.pool.keda.maxReplicas=2"],
            "exceeds keda.maxReplicas",
        ),
        (["results.backend=s3"], "results.s3.bucket is required"),
        (["redis.enabled=false"], "externalRedis.url is required"),
        (
            ["redis.enabled=false", "externalRedis.url=redis://u:pw@host:6379/0"],
            "must not contain credentials",
        ),
    ],
)
def test_cross_field_checks_fail_with_a_clear_message(chartlib, sets, message) -> None:
    """What the schema cannot express fails the render with a message naming the value."""
    assert message in chartlib.render_error(sets=sets)


def test_schema_queue_block_mirrors_tierconfig(chartlib) -> None:
    """tiers.<name>.queue in values.schema.json has exactly TierConfig's fields (it is copied verbatim)."""
    schema = json.loads((chartlib.CHART_DIR / "values.schema.json").read_text())
    queue = schema["properties"]["tiers"]["additionalProperties"]["properties"]["queue"]
    assert set(queue["properties"]) == set(TierConfig.model_fields)
    assert set(queue["properties"]["limits"]["properties"]) == set(TierLimits.model_fields)
    assert queue["additionalProperties"] is False


def test_every_value_is_documented(chartlib) -> None:
    """Every key of values.yaml carries a `# --` comment, or is a block whose keys all do."""
    lines = (chartlib.CHART_DIR / "values.yaml").read_text().splitlines()
    key_re = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$")
    entries = []  # (indent, key, documented, is_block)
    for i, line in enumerate(lines):
        m = key_re.match(line)
        if not m or line.lstrip().startswith("-"):
            continue
        j = i - 1
        documented = False
        while j >= 0 and lines[j].strip().startswith("#"):
            if lines[j].strip().startswith("# --"):
                documented = True
            j -= 1
        entries.append((len(m.group(1)), m.group(2), documented, m.group(3).strip() == ""))
    undocumented = []
    for n, (indent, key, documented, is_block) in enumerate(entries):
        if documented:
            continue
        # An undocumented block is fine when every direct child is documented (or itself such a block).
        children_ok = is_block and n + 1 < len(entries) and entries[n + 1][0] > indent
        if not children_ok:
            # keys inside a documented block value (e.g. tier entries, model configs) are covered by it
            ancestors, level = [], indent
            for e in reversed(entries[:n]):
                if e[0] < level:
                    ancestors.append(e)
                    level = e[0]
            if any(a[2] for a in ancestors):
                continue
            undocumented.append(key)
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


# ---------------------------------------------------------------- configuration contract


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_and_worker_env_build_valid_settings(rendered, variant, tmp_path, monkeypatch) -> None:
    """config.yaml plus each container's GENJOB_* env load into GenjobSettings, as in the pod."""
    docs = rendered[variant]
    config = config_of(docs)
    for kind_name, spec in [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] == "Deployment"
    ]:
        container = spec["containers"][0]
        settings = settings_for(config, container, tmp_path, monkeypatch)
        assert settings.redis.key_prefix == config["redis"]["key_prefix"], kind_name
        if container["args"] == ["worker"]:
            tier = kind_name.rsplit("-worker-", 1)[1]
            assert settings.worker.tiers == [tier]
            order = consumption_order(settings.tiers, settings.worker.tiers, settings.worker.spill_over)
            assert order[0] == tier


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_holds_only_the_queue_part_of_each_tier(rendered, variant) -> None:
    config = config_of(rendered[variant])
    for name, tier in config["tiers"].items():
        assert set(tier) <= set(TierConfig.model_fields), name


def test_external_redis_url_and_password_reach_the_pods(rendered) -> None:
    docs = rendered["external-redis"]
    config = config_of(docs)
    assert config["redis"]["url"].startswith("rediss://master.genjob-cache")
    assert config["redis"]["key_prefix"] == "gj-prod"
    assert config["results"] == {
        "backend": "s3",
        "s3_bucket": "genjob-results",
        "s3_prefix": "genjob/",
        "s3_region": "us-east-1",
    }
    for _, spec in [(1, d["spec"]["template"]["spec"]) for d in docs if d["kind"] == "Deployment"]:
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        ref = env["GENJOB_REDIS__PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "genjob-redis-external", "key": "password"}
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    assert not [d for d in docs if d["kind"] == "Secret" and "redis" in d["metadata"]["name"]]


# ---------------------------------------------------------------- KEDA


@pytest.mark.parametrize("variant", ["default", "all-tiers", "external-redis", "minimal"])
def test_scaledobjects_scale_on_pending_plus_inflight_keys(rendered, variant) -> None:
    """Each pool's ScaledObject reads genjob/keys.py's pending list and in-flight set of its tier."""
    docs = rendered[variant]
    config = config_of(docs)
    keys = RedisKeys(config["redis"]["key_prefix"])
    scaled = {tier_of(d): d for d in docs if d["kind"] == "ScaledObject"}
    assert set(scaled) == {tier_of(w) for w in workers(docs)}
    auths = {d["metadata"]["name"]: d for d in docs if d["kind"] == "TriggerAuthentication"}
    for tier, so in scaled.items():
        spec = so["spec"]
        triggers = {t["name"]: t for t in spec["triggers"] if t["type"] == "redis"}
        assert set(triggers) == {"pending", "priority", "inflight"}
        assert triggers["pending"]["metadata"]["listName"] == keys.pending(tier)
        assert triggers["priority"]["metadata"]["listName"] == keys.pending_by_priority(tier)
        assert triggers["inflight"]["metadata"]["listName"] == keys.inflight(tier)
        modifiers = spec["advanced"]["scalingModifiers"]
        assert set(re.findall(r"[a-z_]+", modifiers["formula"])) == set(triggers)
        assert modifiers["target"] == triggers["pending"]["metadata"]["listLength"]
        assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 1
        assert spec["scaleTargetRef"]["name"] == so["metadata"]["name"]
        for trigger in triggers.values():
            assert trigger["type"] == "redis"
            auth = auths[trigger["authenticationRef"]["name"]]
            refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
            worker = next(w for w in workers(docs) if tier_of(w) == tier)
            env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
            pod_ref = env["GENJOB_REDIS__PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert refs["password"]["name"] == pod_ref["name"]
            if "GENJOB_REDIS__USERNAME" in env:  # ACL users: KEDA has its own read-only one
                assert set(refs) == {"username", "password"}
                assert (refs["username"]["key"], refs["password"]["key"]) == (
                    "keda-username",
                    "keda-password",
                )
                assert pod_ref["key"] == "worker-password"
            else:
                assert set(refs) == {"password"} and refs["password"]["key"] == pod_ref["key"]


@pytest.mark.parametrize("variant", ["default", "all-tiers", "external-redis", "minimal"])
def test_push_trigger_reaches_the_operators_grpc_port_with_kedas_client_certificate(
    rendered, variant
) -> None:
    """Each ScaledObject's external-push trigger names its tier and dials the operator's headless
    push Service on the port the operator binds (config operator.push_port), authenticated by the
    client certificate whose CA the operator trusts; only KEDA's namespace may reach that port."""
    docs = rendered[variant]
    config = config_of(docs)["operator"]
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-operator-push")
    )
    assert (
        service["spec"]["clusterIP"] == "None"
    )  # KEDA balances over the pods: a standby's ended stream retries elsewhere
    (port,) = service["spec"]["ports"]
    assert port["port"] == config["push_port"] and config["push_tls_dir"] == "/etc/genjob/push-tls"
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    auths = {d["metadata"]["name"]: d for d in docs if d["kind"] == "TriggerAuthentication"}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for so in by_kind_all(docs, "ScaledObject"):
        (push,) = [t for t in so["spec"]["triggers"] if t["type"] == "external-push"]
        assert push["metadata"] == {"scalerAddress": f"{host}:{port['port']}", "tier": tier_of(so)}
        auth = auths[push["authenticationRef"]["name"]]
        # Before the ScaledObjects (helm applies unknown kinds alphabetically): KEDA builds a push
        # scaler whose TriggerAuthentication is missing without TLS and never rebuilds it.
        hooks = set(auth["metadata"]["annotations"]["helm.sh/hook"].split(","))
        assert hooks == {"pre-install", "pre-upgrade"}
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert {p: r["key"] for p, r in refs.items()} == {
            "caCert": "ca.crt",
            "tlsClientCert": "tls.crt",
            "tlsClientKey": "tls.key",
        }
        assert set(secrets[refs["caCert"]["name"]]["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    operator = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    )
    volume = next(v for v in operator["spec"]["template"]["spec"]["volumes"] if v["name"] == "push-tls")
    assert {i["key"] for i in volume["secret"]["items"]} == {"ca.crt", "tls.crt", "tls.key"}
    server = secrets[volume["secret"]["secretName"]]
    assert server["data"]["ca.crt"] == secrets[refs["caCert"]["name"]]["data"]["ca.crt"]  # one CA
    if not any(d["kind"] == "NetworkPolicy" for d in docs):
        return  # networkPolicy.enabled=false in this variant
    policy = next(
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-operator-push")
    )
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": port["port"], "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}]


def test_push_trigger_can_be_turned_off(chartlib) -> None:
    docs = chartlib.objects(chartlib.render(sets=["operator.pushScaler.enabled=false"]))
    for so in by_kind_all(docs, "ScaledObject"):
        assert {t["type"] for t in so["spec"]["triggers"]} == {"redis"}
    assert "push_port" not in config_of(docs)["operator"]
    assert not [d for d in docs if "push" in d["metadata"]["name"]]


def test_keda_trigger_address_follows_external_redis_url(rendered) -> None:
    for so in by_kind_all(rendered["external-redis"], "ScaledObject"):
        for t in (t for t in so["spec"]["triggers"] if t["type"] == "redis"):
            meta = t["metadata"]
            assert meta["address"] == "master.genjob-cache.abc123.use1.cache.amazonaws.com:6380"
            assert meta["databaseIndex"] == "2" and meta["enableTLS"] == "true"
            assert meta["listName"].startswith("gj-prod:")


def test_bundled_redis_address_is_reachable_from_the_keda_namespace(rendered) -> None:
    for so in by_kind_all(rendered["default"], "ScaledObject"):
        for t in (t for t in so["spec"]["triggers"] if t["type"] == "redis"):
            assert t["metadata"]["address"] == "genjob-redis.genjob.svc.cluster.local:6379"


def test_with_keda_an_install_starts_every_pool_at_min_replicas(rendered) -> None:
    """Left out, replicas would default to 1 and the install itself would launch a GPU node per
    tier before KEDA's first poll. (An upgrade keeps the live count: tests/autoscaling.)"""
    for w in workers(rendered["default"]):
        assert w["spec"]["replicas"] == 0, w["metadata"]["name"]


def test_without_keda_pools_have_fixed_replicas_and_no_keda_objects(rendered) -> None:
    docs = rendered["no-keda"]
    assert not [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
    replicas = {tier_of(w): w["spec"]["replicas"] for w in workers(docs)}
    # free has pool.enabled=false: served by spill-over only.
    assert replicas == {"enterprise": 2, "pro": 1, "studio": 1, "starter": 1}


# ---------------------------------------------------------------- workers: drain, GPUs, volumes


@pytest.mark.parametrize("variant", VARIANTS)
def test_termination_grace_exceeds_the_worker_drain(rendered, variant) -> None:
    """SIGKILL never lands before the worker's drain deadline; Spot pools fit the 2-minute notice."""
    for w in workers(rendered[variant]):
        spec = w["spec"]["template"]["spec"]
        env = chartlib_env(spec["containers"][0])
        drain = float(env["GENJOB_WORKER__DRAIN_GRACE_SECONDS"])
        grace = spec["terminationGracePeriodSeconds"]
        assert 0 < drain < grace, w["metadata"]["name"]
        if spec["nodeSelector"]["karpenter.sh/capacity-type"] == "spot":
            assert grace <= 120


def test_capacity_type_per_tier(rendered) -> None:
    types = {
        tier_of(w): w["spec"]["template"]["spec"]["nodeSelector"]["karpenter.sh/capacity-type"]
        for w in workers(rendered["default"])
    }
    assert types == {
        "enterprise": "on-demand",
        "studio": "spot",
        "pro": "spot",
        "starter": "spot",
        "free": "spot",
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_worker_pods_get_a_gpu_shm_and_their_own_identity(rendered, variant) -> None:
    for w in workers(rendered[variant]):
        spec = w["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        env = {e["name"]: e for e in container["env"]}
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["ports"] == [{"name": "http", "containerPort": 8081}]


def test_models_volume_is_read_only_pvc_or_init_filled(rendered) -> None:
    for w in workers(rendered["default"]):
        spec = w["spec"]["template"]["spec"]
        models = next(v for v in spec["volumes"] if v["name"] == "models")
        assert models["persistentVolumeClaim"] == {"claimName": "genjob-models", "readOnly": True}
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "models")
        assert mount["readOnly"] is True
    for w in workers(rendered["external-redis"]):
        spec = w["spec"]["template"]["spec"]
        assert [c["name"] for c in spec["initContainers"]] == ["fetch-models"]
        assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == "models")


def test_worker_pdbs_use_max_unavailable(rendered) -> None:
    """A minAvailable PDB on a one-replica pool would block node drains forever."""
    docs = rendered["default"]
    pdbs = {
        tier_of(p): p
        for p in docs
        if p["kind"] == "PodDisruptionBudget" and "genjob.io/tier" in p["metadata"]["labels"]
    }
    assert set(pdbs) == {tier_of(w) for w in workers(docs)}
    for tier, pdb in pdbs.items():
        assert "minAvailable" not in pdb["spec"]
        assert pdb["spec"]["maxUnavailable"] == 1
        worker = next(w for w in workers(docs) if tier_of(w) == tier)
        assert pdb["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]


# ---------------------------------------------------------------- RBAC


def _bound_roles(docs, sa_name: str) -> list[tuple[str, str]]:
    out = []
    for b in docs:
        if b["kind"] in ("RoleBinding", "ClusterRoleBinding") and any(
            s["kind"] == "ServiceAccount" and s["name"] == sa_name for s in b["subjects"]
        ):
            out.append((b["kind"], b["roleRef"]["name"]))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_worker_rbac_is_namespaced_get_patch_pods_only(rendered, variant) -> None:
    docs = rendered[variant]
    sa = workers(docs)[0]["spec"]["template"]["spec"]["serviceAccountName"]
    bound = _bound_roles(docs, sa)
    assert [kind for kind, _ in bound] == ["RoleBinding"], "workers must not hold cluster-wide rights"
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == bound[0][1]]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]


def test_gateway_gets_a_clusterrole_only_in_cluster_mode(rendered) -> None:
    cluster_mode = [
        d
        for d in rendered["default"]
        if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-api")
    ]
    assert cluster_mode[0]["rules"] == [
        {
            "apiGroups": ["genjob.io"],
            "resources": ["generationjobs"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        }
    ]
    local = rendered["external-redis"]  # api.mode=local
    assert not [
        d
        for d in local
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding") and d["metadata"]["name"].endswith("-api")
    ]
    api = next(d for d in local if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-api"))
    assert api["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_operator_rbac_covers_kopf_and_nothing_sensitive(rendered) -> None:
    role = next(
        d
        for d in rendered["default"]
        if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-operator")
    )
    grants = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    for needed in [
        ("genjob.io", "generationjobs", "watch"),
        ("genjob.io", "generationjobs", "patch"),
        ("genjob.io", "generationjobs/status", "patch"),
        ("genjob.io", "generationjobs/finalizers", "update"),
        ("", "events", "create"),
        ("", "namespaces", "get"),
        ("genjob.io", "generationjobs", "delete"),
    ]:
        assert needed in grants, needed
    assert not {r for _, r, _ in grants} & {"secrets", "pods", "configmaps", "*"}
    assert not {v for _, _, v in grants} & {"*", "deletecollection", "escalate", "bind", "impersonate"}
    assert {r for _, r, v in grants if v == "delete"} == {"generationjobs"}, "TTL deletes jobs, nothing else"


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_wildcards_in_any_rbac_rule(rendered, variant) -> None:
    for d in rendered[variant]:
        for rule in d.get("rules", []) if d["kind"] in ("Role", "ClusterRole") else []:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], d["metadata"]["name"]


# ---------------------------------------------------------------- Pod Security Standard "restricted"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_meets_the_restricted_pod_security_standard(chartlib, rendered, variant) -> None:
    for name, spec in chartlib.pod_specs(rendered[variant]):
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], (
                name,
                c["name"],
            )
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert not sc.get("privileged"), (name, c["name"])
            assert "resources" in c, (name, c["name"])


# ---------------------------------------------------------------- labels, Redis, monitoring


@pytest.mark.parametrize("variant", VARIANTS)
def test_labels_and_selectors(rendered, variant) -> None:
    for d in rendered[variant]:
        labels = d["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/version",
            "helm.sh/chart",
        ):
            assert key in labels, (d["kind"], d["metadata"]["name"], key)
        if d["kind"] in ("Deployment", "StatefulSet"):
            selector = d["spec"]["selector"]["matchLabels"]
            assert not set(selector) & {"app.kubernetes.io/version", "helm.sh/chart"}
            assert selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()


def test_bundled_redis_persists_with_aof_and_never_evicts(rendered) -> None:
    sts = next(d for d in rendered["default"] if d["kind"] == "StatefulSet")
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--requirepass"] == "$(REDIS_PASSWORD)"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    minimal = next(d for d in rendered["minimal"] if d["kind"] == "StatefulSet")
    assert "volumeClaimTemplates" not in minimal["spec"]


def test_redis_networkpolicy_admits_genjob_pods_and_keda(rendered) -> None:
    policy = next(
        d
        for d in rendered["default"]
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-redis")
    )
    peers = policy["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in peers
    components = next(
        e for e in peers[0]["podSelector"]["matchExpressions"] if e["key"] == "app.kubernetes.io/component"
    )
    assert sorted(components["values"]) == ["api", "operator", "worker"]


def test_default_install_needs_no_prometheus_operator(rendered) -> None:
    for variant in ("default", "no-keda", "external-redis", "minimal"):
        assert not [d for d in rendered[variant] if d["apiVersion"].startswith("monitoring.coreos.com/")]
    kinds = {d["kind"] for d in rendered["all-tiers"] if d["apiVersion"].startswith("monitoring.coreos.com/")}
    assert kinds == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_prometheus_rules_cover_the_required_alerts(rendered) -> None:
    """The expressions themselves are parsed by Prometheus' own parser in test_chart_promql.py."""
    (rule,) = [d for d in rendered["all-tiers"] if d["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) >= {
        "GenjobQueueAgeHigh",
        "GenjobDeadLetterGrowing",
        "GenjobQueueRecordsLost",
        "GenjobPendingWithoutWorkers",
        "GenjobWorkerGPUOutOfMemory",
        "GenjobWorkerOOMKilled",
        "GenjobCrashLooping",
    }
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in ("warning", "critical"), name


def test_grafana_dashboard_is_valid_json(rendered) -> None:
    (cm,) = [
        d
        for d in rendered["all-tiers"]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    dashboard = json.loads(cm["data"]["genjob.json"])
    assert dashboard["uid"] == "genjob-overview" and len(dashboard["panels"]) >= 6
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_api_keys_secret_is_mounted_and_named_in_config(rendered) -> None:
    docs = rendered["all-tiers"]
    config = config_of(docs)
    assert config["api"]["api_keys_file"] == "/etc/genjob/api-keys/api-keys.yaml"
    api = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-api"))
    spec = api["spec"]["template"]["spec"]
    secret = next(v for v in spec["volumes"] if v["name"] == "api-keys")["secret"]["secretName"]
    assert next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret)
    assert "api_keys_file" not in config_of(rendered["default"])["api"]


# small helpers used above
def by_kind_all(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def chartlib_env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_operator_replicas_are_safe(rendered) -> None:
    """Several operator replicas are safe: only the Lease holder acts; the Role allows just that Lease."""
    docs = rendered["default"]
    operator = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-operator")
    )
    assert operator["spec"]["replicas"] == 2
    lease_name = config_of(docs)["operator"]["peering_name"]
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-operator"))
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease_name],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},  # a cold job's worker pod
    ]
    pdb = next(
        d for d in docs if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"].endswith("-operator")
    )
    assert pdb["spec"]["maxUnavailable"] == 1


def exported_metric_names() -> set[str]:
    """Every series name the operator, the worker and the gateway export (from their own metrics classes)."""
    from genjob_api.metrics import ApiMetrics
    from genjob_operator.metrics import OperatorMetrics
    from genjob_worker.metrics import WorkerMetrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names = set()
    for metrics in (OperatorMetrics(), WorkerMetrics(), ApiMetrics()):
        for family in metrics.registry.collect():
            names |= {family.name + s for s in suffixes.get(family.type, [""])}
    return names


def test_alerts_and_dashboard_use_metrics_genjob_exports(rendered) -> None:
    """A renamed metric would silently break an alert: every genjob_* name must really be exported."""
    exported = exported_metric_names()
    docs = rendered["all-tiers"]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    exprs += [t["expr"] for p in json.loads(cm["data"]["genjob.json"])["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bgenjob_[a-z_]+", e)}
    assert used, "no genjob metrics referenced"
    assert used <= exported, f"not exported by genjob: {sorted(used - exported)}"


def test_chart_api_keys_example_is_a_valid_keys_file(rendered) -> None:
    """The chart-managed key file parses with the gateway's own loader."""
    import base64

    from genjob_api.auth import parse_keys

    docs = rendered["all-tiers"]
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-api-keys")]
    text = base64.b64decode(secret["data"]["api-keys.yaml"]).decode()
    (entry,) = parse_keys(text, "ci/all-tiers-values.yaml")
    assert (entry.tenant, entry.tier) == ("acme", "pro")
