"""The manifests fit together and fit the server: probes on real routes, selectors that select,
settings the server accepts, a Redis configured as a cache, the GPU overlay on the vLLM engine."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import TypeAdapter

from server.api_keys import ApiKeySpec
from server.app import create_app
from server.settings import Settings
from tests.deploy.compose_env import DOCKER, final_stage, load_compose
from tests.deploy.kustomize_build import DEPLOY, Doc, build, find, gateway_container, load_docs

BASE = build(DEPLOY / "base")


def pod_spec(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"]


def pod_labels(doc: Doc) -> dict[str, str]:
    return doc["spec"]["template"]["metadata"]["labels"]


def quantity_bytes(text: str) -> int:
    """Kubernetes (Ki, Mi, Gi) and Redis (kb, mb, gb: powers of 1024 too) memory sizes."""
    m = re.fullmatch(r"(\d+)\s*(Ki|Mi|Gi|kb|mb|gb)?", text, re.IGNORECASE)
    assert m, text
    unit = (m.group(2) or "").lower()
    return int(m.group(1)) * {"": 1, "ki": 1 << 10, "kb": 1 << 10, "mi": 1 << 20, "mb": 1 << 20}.get(
        unit, 1 << 30
    )


def test_probes_point_at_routes_the_app_serves() -> None:
    routes = set(create_app(Settings()).openapi()["paths"])
    c = gateway_container(BASE)
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert {"/ready", "/health", "/metrics"} <= routes
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in port_names


def test_gateway_runs_what_the_image_and_compose_run() -> None:
    c = gateway_container(BASE)
    assert c["command"] == load_compose()["services"]["gateway"]["command"]
    user = next(args for word, args in final_stage(DOCKER / "Dockerfile.cpu") if word == "USER")
    security = pod_spec(find(BASE, "Deployment"))["securityContext"]
    assert security["runAsNonRoot"] is True and user == f"{security['runAsUser']}:{security['runAsGroup']}"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys()


def test_services_hpa_and_pdb_select_the_pods_they_mean() -> None:
    deployment, redis = find(BASE, "Deployment"), find(BASE, "StatefulSet")
    gateway_svc, redis_svc = (
        find(BASE, "Service", "ragblend-gateway"),
        find(BASE, "Service", "ragblend-redis"),
    )
    assert gateway_svc["spec"]["selector"].items() <= pod_labels(deployment).items()
    assert redis_svc["spec"]["selector"].items() <= pod_labels(redis).items()
    assert not gateway_svc["spec"]["selector"].items() <= pod_labels(redis).items()
    assert redis["spec"]["serviceName"] == redis_svc["metadata"]["name"]
    ports = {p["name"]: p for p in gateway_svc["spec"]["ports"]}
    assert ports["http"]["targetPort"] == "http" and ports["metrics"]["targetPort"] == "metrics"
    hpa, pdb = find(BASE, "HorizontalPodAutoscaler"), find(BASE, "PodDisruptionBudget")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(deployment).items()


def test_configmap_holds_only_settings_the_server_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    data = find(BASE, "ConfigMap")["data"]
    fields = {f"RAGBLEND_{name.upper()}" for name in Settings.model_fields}
    assert set(data) <= fields, set(data) - fields
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert str(settings.data_dir) == "/data" and settings.host == "0.0.0.0"
    assert "RAGBLEND_REDIS_URL" not in data, "the URL carries the password: it is in the Secret"


def test_volumes_are_where_the_server_writes() -> None:
    deployment = find(BASE, "Deployment")
    mounts = {m["name"]: m["mountPath"] for m in gateway_container(BASE)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    data_dir = find(BASE, "ConfigMap")["data"]["RAGBLEND_DATA_DIR"]
    # a secret given, so that store_config() neither writes nor reads <data dir>/tenant_secret here
    settings = Settings(data_dir=data_dir, tenant_secret="test")
    assert mounts["kv-disk"] == settings.store_config().disk_dir
    assert mounts["data"] == data_dir and mounts["tmp"] == "/tmp"
    # collections are in Postgres: no volume of them, and no shared volume at all
    assert set(mounts) == set(volumes) == {"kv-disk", "data", "tmp", "cache"}
    assert all("emptyDir" in v and v["emptyDir"].get("sizeLimit") for v in volumes.values())
    assert not [d for d in BASE if d["kind"] == "PersistentVolumeClaim"]


@pytest.mark.parametrize("overlay", ["base", "overlays/cpu", "overlays/gpu", "overlays/cloudnative-pg"])
def test_pods_are_hardened(overlay: str) -> None:
    docs = BASE if overlay == "base" else build(DEPLOY / overlay)
    spec = pod_spec(find(docs, "Deployment"))
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = gateway_container(docs)
    security = c["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # with the root read-only, every place the server writes is a volume
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    data_dir = find(docs, "ConfigMap")["data"]["RAGBLEND_DATA_DIR"]
    assert {data_dir, "/tmp", f"{data_dir}/kv"} <= mounts


def test_metrics_are_scraped_from_the_keyless_listener_not_the_api_port() -> None:
    data = find(BASE, "ConfigMap")["data"]
    metrics_port = int(data["RAGBLEND_METRICS_PORT"])
    ports = {p["name"]: p["containerPort"] for p in gateway_container(BASE)["ports"]}
    assert ports["metrics"] == metrics_port != ports["http"] == int(data["RAGBLEND_PORT"])
    annotations = find(BASE, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == metrics_port
    (monitor,) = load_docs(DEPLOY / "monitoring" / "servicemonitor.yaml")
    (endpoint,) = monitor["spec"]["endpoints"]
    service_ports = {p["name"]: p for p in find(BASE, "Service", "ragblend-gateway")["spec"]["ports"]}
    assert service_ports[endpoint["port"]]["targetPort"] == "metrics"


def test_gateways_share_postgres_from_a_secret_or_the_cloudnative_pg_cluster() -> None:
    (secret,) = load_docs(DEPLOY / "base" / "database-secret.example.yaml")
    url = secret["stringData"]["RAGBLEND_DATABASE_URL"]
    assert url.startswith("postgresql://")
    env = {e["name"]: e for e in gateway_container(BASE)["env"]}
    ref = env["RAGBLEND_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], "RAGBLEND_DATABASE_URL")
    assert not ref.get("optional"), "a pod without the database would keep collections to itself"

    docs = build(DEPLOY / "overlays" / "cloudnative-pg")
    cluster = find(docs, "Cluster", None)
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["spec"]["instances"] >= 2
    assert (
        "CREATE EXTENSION IF NOT EXISTS vector"
        in cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    )
    c = gateway_container(docs)
    ref = {e["name"]: e for e in c["env"]}["RAGBLEND_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    # CloudNativePG writes the application user's URL to <cluster>-app under `uri`
    assert (ref["name"], ref["key"]) == (f"{cluster['metadata']['name']}-app", "uri")
    assert "RAGBLEND_API_KEYS" in {e["name"] for e in c["env"]} and c["image"].endswith(":cpu")


def test_secret_references_match_the_example_secret() -> None:
    (secret,) = load_docs(DEPLOY / "base" / "api-keys-secret.example.yaml")
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for e in gateway_container(BASE)["env"]
        if "valueFrom" in e and e["name"] not in ("RAGBLEND_DATABASE_URL", "RAGBLEND_REDIS_URL")
    ]
    assert (
        {r["key"] for r in refs}
        == set(secret["stringData"])
        == {"RAGBLEND_API_KEYS", "RAGBLEND_TENANT_SECRET"}
    )
    assert all(r["name"] == secret["metadata"]["name"] and not r.get("optional") for r in refs)
    keys = TypeAdapter(list[ApiKeySpec]).validate_python(
        json.loads(secret["stringData"]["RAGBLEND_API_KEYS"])
    )
    assert keys and keys[0].requests_per_minute is not None and keys[0].max_streams is not None


def test_redis_is_a_cache_with_a_memory_limit_below_its_container() -> None:
    redis = find(BASE, "StatefulSet")
    (container,) = pod_spec(redis)["containers"]
    args = container["args"]
    assert args[args.index("--save") + 1] == ""
    assert args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    maxmemory = quantity_bytes(args[args.index("--maxmemory") + 1])
    assert 0 < maxmemory < quantity_bytes(container["resources"]["limits"]["memory"])


def test_cpu_overlay_runs_torch_with_threads_matching_its_cpu_limit() -> None:
    c = gateway_container(build(DEPLOY / "overlays" / "cpu"))
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RAGBLEND_ENGINE"] == "torch"
    assert int(env["RAGBLEND_NUM_THREADS"]) == int(c["resources"]["limits"]["cpu"])
    assert c["image"].endswith(":cpu")


def test_gpu_overlay_asks_for_a_gpu_and_runs_vllm() -> None:
    docs = build(DEPLOY / "overlays" / "gpu")
    c = gateway_container(docs)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RAGBLEND_ENGINE"] == "vllm"
    assert "RAGBLEND_API_KEYS" in env, "the overlay's env patch must merge with the base, not replace it"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["image"].endswith(":cuda")
    spec = pod_spec(find(docs, "Deployment"))
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/dev/shm", "/data/kv"} <= mounts
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert find(docs, "PodDisruptionBudget")["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= 4


def test_redis_requires_the_password_in_the_url_the_gateways_read() -> None:
    (secret,) = load_docs(DEPLOY / "base" / "redis-secret.example.yaml")
    name, data = secret["metadata"]["name"], secret["stringData"]
    url = re.fullmatch(r"redis://:([^@]+)@([^:/]+):(\d+)/0", data["RAGBLEND_REDIS_URL"])
    assert url and url.group(1) == data["REDIS_PASSWORD"]
    assert url.group(2) == find(BASE, "Service", "ragblend-redis")["metadata"]["name"]
    assert Settings(redis_url=data["RAGBLEND_REDIS_URL"]).redis_url == data["RAGBLEND_REDIS_URL"]
    gateway_ref = {e["name"]: e for e in gateway_container(BASE)["env"]}["RAGBLEND_REDIS_URL"]
    assert gateway_ref["valueFrom"]["secretKeyRef"] == {"name": name, "key": "RAGBLEND_REDIS_URL"}
    (redis,) = pod_spec(find(BASE, "StatefulSet"))["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in redis["env"]}
    assert env["REDIS_PASSWORD"] == env["REDISCLI_AUTH"] == {"name": name, "key": "REDIS_PASSWORD"}
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"  # expanded by the kubelet
    assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]  # REDISCLI_AUTH


def allowed_sources(policy: Doc) -> list[tuple[dict[str, str], set[int]]]:
    out = []
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        for source in rule["from"]:
            labels = source.get("podSelector", source.get("namespaceSelector", {})).get("matchLabels", {})
            out.append((labels, ports))
    return out


def test_only_the_gateways_reach_redis() -> None:
    policy = find(BASE, "NetworkPolicy", "ragblend-redis")
    redis = find(BASE, "StatefulSet")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(redis).items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ((labels, ports),) = allowed_sources(policy)
    assert labels.items() <= pod_labels(find(BASE, "Deployment")).items()
    assert not labels.items() <= pod_labels(redis).items()
    assert ports == {6379}


def test_postgres_in_the_cluster_is_reached_by_the_gateways_and_its_operator_only() -> None:
    docs = build(DEPLOY / "overlays" / "cloudnative-pg")
    cluster = find(docs, "Cluster", None)
    policy = find(docs, "NetworkPolicy", "ragblend-pg")
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected == {"cnpg.io/cluster": cluster["metadata"]["name"]}  # the operator labels its pods so
    sources = allowed_sources(policy)
    gateway = pod_labels(find(docs, "Deployment"))
    assert any(labels.items() <= gateway.items() and ports == {5432} for labels, ports in sources)
    for labels, _ports in sources:  # anyone else: its own instances, or the operator's namespace
        assert (
            labels.items() <= gateway.items() or labels == selected or "kubernetes.io/metadata.name" in labels
        )
    assert find(docs, "NetworkPolicy", "ragblend-redis")  # the base's policy too
