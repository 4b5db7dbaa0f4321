"""Workload manifests for the injection tests, and the `kubernetes` models' round trip of a Pod."""

from __future__ import annotations

import copy

import kubernetes

API_CLIENT = kubernetes.client.ApiClient()
POD_SPEC = {"serviceAccountName": "weather-server",
            "containers": [{"name": "app", "image": "weather:1", "ports": [{"containerPort": 8080}]}]}


def pod(**spec_overrides) -> dict:
    spec = {**copy.deepcopy(POD_SPEC), **spec_overrides}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "weather-0", "namespace": "tools"}, "spec": spec}


def template() -> dict:
    return {"metadata": {"labels": {"app": "weather"}}, "spec": copy.deepcopy(POD_SPEC)}


def workload(kind: str) -> dict:
    """A `kind` object whose pods are `template()`."""
    api_version = {"Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    meta = {"name": "weather", "namespace": "tools"}
    if kind == "CronJob":
        spec = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}
    else:
        spec = {"selector": {"matchLabels": {"app": "weather"}}, "template": template()}
        if kind == "StatefulSet":
            spec["serviceName"] = "weather"
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}


def as_model(obj: dict, model: str):
    """The object through the official client's models, and whatever the round trip dropped (unknown fields)."""
    parsed = API_CLIENT._ApiClient__deserialize(copy.deepcopy(obj), model)
    return parsed, API_CLIENT.sanitize_for_serialization(parsed)
