"""Enough of `kustomize build` for our manifests, so tests need no kustomize binary.

Handles what deploy/ uses: `resources` (files and other kustomization directories), `images`
(new name and tag) and `patches` given as files with a kind/name target, merged the way a
strategic merge patch merges our fields: mappings key by key, lists of named items by `name`,
anything else replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(item, dict) and "name" in item for item in [*base, *patch]):
        out_list = [copy.deepcopy(item) for item in base]
        index = {item["name"]: i for i, item in enumerate(out_list)}
        for item in patch:
            if item["name"] in index:
                out_list[index[item["name"]]] = merge(out_list[index[item["name"]]], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def kustomization(directory: Path) -> Doc:
    docs = load_docs(directory / "kustomization.yaml")
    assert len(docs) == 1 and docs[0]["kind"] == "Kustomization", directory
    return docs[0]


def _containers(doc: Doc) -> list[Doc]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("containers", []), *spec.get("initContainers", [])]


def _set_images(docs: list[Doc], images: list[Doc]) -> None:
    for doc in docs:
        for container in _containers(doc):
            name, _, tag = container["image"].partition(":")
            for rule in images:
                if rule["name"] == name:
                    new_tag = rule.get("newTag", tag)
                    container["image"] = rule.get("newName", name) + (f":{new_tag}" if new_tag else "")


def build(directory: Path) -> list[Doc]:
    """The resources a kustomization directory renders, patches applied."""
    kz = kustomization(directory)
    docs: list[Doc] = []
    for resource in kz.get("resources", []):
        path = (directory / resource).resolve()
        docs += build(path) if path.is_dir() else load_docs(path)
    _set_images(docs, kz.get("images", []))
    for patch in kz.get("patches", []):
        target = patch["target"]
        (body,) = load_docs(directory / patch["path"])
        hits = [
            i
            for i, doc in enumerate(docs)
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]
        ]
        assert len(hits) == 1, f"patch {patch['path']} matches {len(hits)} resources"
        docs[hits[0]] = merge(docs[hits[0]], body)
    return docs


def find(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    hits = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"{len(hits)} {kind} named {name}"
    return hits[0]


def gateway_container(docs: list[Doc]) -> Doc:
    deployment = find(docs, "Deployment", "ragblend-gateway")
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"]
    return container
