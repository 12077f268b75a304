"""Schemas of the custom resources the chart renders, for `recsys helm check`.

kubernetes-validate knows only built-in kinds. These are the parts of each CRD's
``openAPIV3Schema`` that the chart uses, closed with ``additionalProperties: false`` where the
chart owns the whole object, so a misspelled field fails the check as it does for a built-in
kind (the API server would prune it without a word):

- ``PrometheusRule`` (Prometheus Operator, monitoring.coreos.com/v1): the whole spec.
- ``ServiceMonitor`` (same): the fields of the spec and endpoints the chart sets, and a few more.
- ``InferenceService`` (KServe, serving.kserve.io/v1beta1): open; a predictor with containers
  that name an image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Prometheus' duration syntax, as the operator's CRDs spell it ("0" or units in order: 1h30m).
_DURATION = {
    "type": "string",
    "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    "(([0-9]+)ms)?)$",
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": _STRING_MAP,
        "matchExpressions": {"type": "array", "items": {"type": "object"}},
    },
}


def _resource(api_version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"type": "string"},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "labels": _STRING_MAP,
                    "annotations": _STRING_MAP,
                },
            },
            "spec": spec,
        },
    }


_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    # one of alert and record (the operator's webhook enforces it)
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "properties": {
        "alert": {"type": "string", "minLength": 1},
        "record": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "expr": {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1}]},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "targetPort": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "params": {"type": "object"},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"},
        "relabelings": {"type": "array", "items": {"type": "object"}},
        "metricRelabelings": {"type": "array", "items": {"type": "object"}},
    },
}

# kind -> JSON schema of the object
SCHEMAS: dict[str, dict[str, Any]] = {
    "PrometheusRule": _resource(
        "monitoring.coreos.com/v1",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "labels": _STRING_MAP,
                            "limit": {"type": "integer"},
                            "partial_response_strategy": {"type": "string"},
                            "query_offset": _DURATION,
                            "rules": {"type": "array", "items": _RULE},
                        },
                    },
                }
            },
        },
    ),
    "ServiceMonitor": _resource(
        "monitoring.coreos.com/v1",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {"type": "array", "items": _ENDPOINT},
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "sampleLimit": {"type": "integer", "minimum": 0},
            },
        },
    ),
    "InferenceService": {
        "type": "object",
        "required": ["apiVersion", "spec"],
        "properties": {
            "apiVersion": {"const": "serving.kserve.io/v1beta1"},
            "spec": {
                "type": "object",
                "required": ["predictor"],
                "properties": {
                    "predictor": {
                        "type": "object",
                        "required": ["containers"],
                        "properties": {
                            "containers": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {"image": {"type": "string", "minLength": 1}},
                                },
                            }
                        },
                    }
                },
            },
        },
    },
}


def check_custom_resource(obj: Mapping[str, Any]) -> list[str]:
    """Problems of one custom resource of a kind in `SCHEMAS` (empty: valid).

    Args:
        obj: A rendered object whose ``kind`` is a key of `SCHEMAS`.

    Returns:
        One ``path: message`` per violation, in document order.
    """
    import jsonschema  # with kubernetes-validate (dev extra), as helm.py imports that

    validator = jsonschema.Draft7Validator(SCHEMAS[obj["kind"]])
    errors = sorted(validator.iter_errors(dict(obj)), key=lambda e: list(map(str, e.path)))
    return [f"{'.'.join(str(p) for p in e.path) or '<root>'}: {e.message}" for e in errors]
