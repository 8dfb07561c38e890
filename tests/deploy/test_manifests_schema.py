"""Every Kubernetes manifest in deploy/ parses and passes the Kubernetes API schemas (strict: an
unknown or misspelt field fails), as files and as the rendered overlays."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.kustomize_build import DEPLOY, Doc, build, find, kustomization, load_docs

# The oldest Kubernetes still commonly run, and the newest whose schemas are bundled.
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
OVERLAYS = ("base", "overlays/cpu", "overlays/gpu", "overlays/cloudnative-pg", "overlays/redis-tls")
# Prometheus Operator's and CloudNativePG's: no schema in the Kubernetes API
CRD_KINDS = {"ServiceMonitor", "Cluster"}


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def test_every_yaml_file_in_deploy_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 14
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs if d is not None), path


def test_kustomizations_name_files_that_exist_and_leave_nothing_out() -> None:
    listed: set[Path] = set()
    for name in OVERLAYS:
        directory = DEPLOY / name
        kz = kustomization(directory)
        for entry in kz.get("resources", []) + [p["path"] for p in kz.get("patches", [])]:
            path = (directory / entry).resolve()
            assert path.exists(), f"{name}/kustomization.yaml names missing {entry}"
            listed.add(path)
    unlisted = [
        p
        for p in manifest_files()
        if p.resolve() not in listed
        and not p.name.endswith(".example.yaml")
        and p.parent.name != "monitoring"
    ]
    assert not unlisted, f"manifests no kustomization uses: {unlisted}"


def whole_manifests() -> list[Path]:
    """Files holding whole resources (overlay patches are partial; rendered overlays are checked)."""
    return [p for p in manifest_files() if (DEPLOY / "overlays") not in p.parents]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", whole_manifests(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_file_passes_the_schema(path: Path, version: str) -> None:
    docs = load_docs(path)
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_passes_the_schema(overlay: str, version: str) -> None:
    docs = build(DEPLOY / overlay)
    kinds = sorted(d["kind"] for d in docs)
    # no PersistentVolumeClaim: collections live in Postgres, nothing is shared through a volume
    expected = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    expected += ["Service", "StatefulSet", "NetworkPolicy"]
    expected += ["Cluster", "NetworkPolicy"] if overlay.endswith("cloudnative-pg") else []
    assert kinds == sorted(expected)
    for doc in docs:
        if doc["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_deployment() -> None:
    """So that passing means something: a misspelt field and a wrong type both fail."""
    deployment = find(build(DEPLOY / "base"), "Deployment")
    misspelt: Doc = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, VERSIONS[-1], strict=True)
    wrong_type: Doc = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, VERSIONS[-1], strict=True)


def test_service_monitor_selects_the_metrics_port_of_the_gateway_service() -> None:
    (monitor,) = load_docs(DEPLOY / "monitoring" / "servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    service = find(build(DEPLOY / "base"), "Service", "ragblend-gateway")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
