"""Helpers for the Helm chart tests: paths, rendering with real Helm (helm_python), YAML loading.

A plain module rather than conftest.py so that tests can import it by a name no other test folder uses
(several folders have a `conftest` module). Fixtures live in conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "agentic-cp"
# Upstream's CRD files, byte for byte; templates/crds/crds.yaml renders them with printer columns.
CHART_CRDS_DIR = CHART_DIR / "files" / "crds"
UPSTREAM_DIR = REPO_ROOT.parent / "shared" / "upstream-examples" / "kube-agentic-networking"
PROJECT_MANIFESTS_DIR = REPO_ROOT / "tests" / "manifests"

RELEASE = "agentic-cp"
NAMESPACE = "agentic-system"

# Non-default values exercised by the tests.
CUSTOM_VALUES: dict[str, Any] = {
    "replicas": 3,
    "trustDomain": "mesh.example.org",
    "logLevel": "debug",
    "image": {"repository": "registry.example.org/agentic-cp", "tag": "1.2.3"},
    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    "gatewayClass": {"create": False},
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 7, "targetCPUUtilizationPercentage": 60},
    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kube-prometheus"}},
    "networkPolicy": {"monitoringNamespace": "observability",
                      "monitoringPodLabels": {"app.kubernetes.io/name": "prometheus"}},
    "proxy": {"image": {"repository": "registry.example.org/envoy", "tag": "v1.40.0",
                        "digest": "sha256:" + "0123456789abcdef" * 4}},
    "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "DoNotSchedule"}],
    "podAnnotations": {"prometheus.io/scrape": "true"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "mesh", "effect": "NoSchedule"}],
}


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE, chart_dir: Path = CHART_DIR) -> list[dict]:
    """Render the chart with real Helm and return every object, in template order."""
    manifests = helm_python.Chart.load(chart_dir).render(values or {}, name=name, namespace=namespace)
    objects = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def render_notes(values: dict[str, Any] | None = None) -> str:
    manifests = helm_python.Chart.load(CHART_DIR).render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return next(text for template, text in manifests.items() if template.endswith("NOTES.txt"))


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
