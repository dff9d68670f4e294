"""The OpenAPI 3.1 document of the job service, written by hand.

Written rather than generated from the handlers: the handlers check bodies
themselves (to name every bad field at once), so there is no schema
object to generate from, and a hand-written document says what a client
needs — status codes, problem types, the long poll — in the words of
docs/jobs-api.md. tests/jobs/test_service.py checks that it lists every
route the app serves and that every reference in it resolves.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._submission import MAX_DEPTH, MAX_SECONDS, MAX_TEXT

__all__ = ["PROBLEM_TYPES", "openapi_document"]

#: the ``type`` of every problem the service answers with, by short name
PROBLEM_TYPES = {
    "malformed-json": "urn:prioritize:problem:malformed-json",
    "invalid-request": "urn:prioritize:problem:invalid-request",
    "unsupported-media-type": "urn:prioritize:problem:unsupported-media-type",
    "body-too-large": "urn:prioritize:problem:body-too-large",
    "job-not-found": "urn:prioritize:problem:job-not-found",
    "job-not-cancellable": "urn:prioritize:problem:job-not-cancellable",
    "idempotency-key-reused": "urn:prioritize:problem:idempotency-key-reused",
    "internal-error": "urn:prioritize:problem:internal-error",
    "shed": "urn:prioritize:problem:shed",
}

_STAT_NAMES = (
    "queued",
    "scheduled",
    "running",
    "succeeded",
    "failed",
    "dead",
    "cancelled",
    "shed",
    "oldest_wait",
)
_TIME = {"type": ["string", "null"], "format": "date-time"}
_PROBLEM_JSON = "application/problem+json"


def openapi_document(
    *, version: str, levels: Sequence[str], max_body: int, max_wait: float
) -> dict[str, object]:
    """The service's API: routes, bodies, status codes and problem responses."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "prioritize job service",
            "version": version,
            "description": (
                "Submit jobs to run by priority, follow them, fetch their results, cancel "
                "them. Errors are RFC 9457 problem details (application/problem+json)."
            ),
        },
        "paths": _paths(max_wait),
        "components": {
            "schemas": _schemas(levels, max_body),
            "responses": _responses(max_body),
            "parameters": {
                "JobId": {
                    "name": "job_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The id a submission answered with.",
                }
            },
        },
    }


def _paths(max_wait: float) -> dict[str, object]:
    job_id = {"$ref": "#/components/parameters/JobId"}
    return {
        "/v1/jobs": {
            "post": {
                "operationId": "submitJob",
                "summary": "Submit a job",
                "description": (
                    "The job's level is the level the policy's rules and trust give this "
                    "request; a level in the body may only lower it."
                ),
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                        "description": (
                            "draft-ietf-httpapi-idempotency-key-header: a repeated key "
                            "answers 200 with the job it first created."
                        ),
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}
                    },
                },
                "responses": {
                    "202": {
                        "description": "Accepted: the job is stored.",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": _json("Accepted"),
                    },
                    "200": {
                        "description": "The idempotency key matched a job: that job, unchanged.",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": _json("Job"),
                    },
                    "400": {"$ref": "#/components/responses/MalformedJson"},
                    "413": {"$ref": "#/components/responses/BodyTooLarge"},
                    "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
                    "422": {"$ref": "#/components/responses/InvalidRequest"},
                    "503": {"$ref": "#/components/responses/Shed"},
                },
            }
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "A job's status, and its result once it has one",
                "parameters": [
                    job_id,
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number", "minimum": 0},
                        "description": (
                            "Seconds to wait for the job to finish before answering (long "
                            f"poll); at most {max_wait:g} are waited."
                        ),
                    },
                ],
                "responses": {
                    "200": {"description": "The job.", "content": _json("Job")},
                    "404": {"$ref": "#/components/responses/JobNotFound"},
                    "422": {"$ref": "#/components/responses/InvalidRequest"},
                },
            },
            "delete": {
                "operationId": "cancelJob",
                "summary": "Cancel a job that has not started",
                "parameters": [job_id],
                "responses": {
                    "200": {"description": "The job, now cancelled.", "content": _json("Job")},
                    "404": {"$ref": "#/components/responses/JobNotFound"},
                    "409": {"$ref": "#/components/responses/JobNotCancellable"},
                },
            },
        },
        "/v1/stats": {
            "get": {
                "operationId": "getStats",
                "summary": "Jobs per level",
                "responses": {
                    "200": {"description": "Counts per level.", "content": _json("Stats")}
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "The Prometheus text format (OpenMetrics if asked for).",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def _schemas(levels: Sequence[str], max_body: int) -> dict[str, object]:
    level = {"type": "string", "enum": list(levels)}
    seconds = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}
    text = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
    status = {
        "type": "string",
        "enum": ["scheduled", "queued", "running", "succeeded", "dead", "cancelled", "shed"],
    }
    stat = {"type": "number"}
    return {
        "Submission": {
            "type": "object",
            "description": (
                f"At most {max_body} bytes; arguments nest at most {MAX_DEPTH} deep and "
                "carry finite numbers only."
            ),
            "required": ["task"],
            "additionalProperties": False,
            "properties": {
                "task": {**text, "description": "The registered name of the task."},
                "args": {"type": "array", "default": []},
                "kwargs": {"type": "object", "default": {}},
                "level": {**level, "description": "May only lower the request's level."},
                "flow": {**text, "description": "Tenant or user: flows take turns in a level."},
                "delay": {**seconds, "description": "Seconds from now before it may run."},
                "deadline": {**seconds, "description": "Seconds from now: shed if not started."},
                "idempotency_key": {**text, "description": "As the Idempotency-Key header."},
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["id", "status", "level", "location"],
            "properties": {
                "id": {"type": "string"},
                "status": status,
                "level": level,
                "location": {"type": "string"},
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "task", "level", "status", "attempts", "enqueued_at"],
            "properties": {
                "id": {"type": "string"},
                "task": {"type": "string"},
                "level": level,
                "flow": {"type": ["string", "null"]},
                "status": status,
                "attempts": {"type": "integer", "minimum": 0},
                "enqueued_at": _TIME,
                "started_at": _TIME,
                "finished_at": _TIME,
                "run_at": _TIME,
                "deadline": _TIME,
                "reason": {"type": ["string", "null"]},
                "result": {"description": "The task's return value, once it succeeded."},
                "error": {"type": ["string", "null"]},
                "traceback": {"type": ["string", "null"]},
                "location": {"type": "string", "description": "Only in answers to a submission."},
            },
        },
        "Stats": {
            "type": "object",
            "required": ["levels"],
            "properties": {
                "levels": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": dict.fromkeys(_STAT_NAMES, stat),
                    },
                }
            },
        },
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "enum": [*PROBLEM_TYPES.values(), "about:blank"]},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
            },
        },
        "InvalidRequestProblem": {
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {
                    "type": "object",
                    "required": ["errors"],
                    "properties": {
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "message"],
                                "properties": {
                                    "field": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        }
                    },
                },
            ]
        },
    }


def _responses(max_body: int) -> dict[str, object]:
    problem = {_PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    retry_after = {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}
    return {
        "MalformedJson": {"description": "The body is not JSON.", "content": problem},
        "BodyTooLarge": {"description": f"The body is over {max_body} bytes.", "content": problem},
        "UnsupportedMediaType": {
            "description": "The body is not sent as application/json.",
            "content": problem,
        },
        "InvalidRequest": {
            "description": "Fields or parameters are wrong, or an idempotency key was reused "
            "for another job; `errors` names each field.",
            "content": {
                _PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/InvalidRequestProblem"}}
            },
        },
        "JobNotFound": {
            "description": "No such job: never submitted, or dropped after its result TTL.",
            "content": problem,
        },
        "JobNotCancellable": {
            "description": "The job has started or finished; only a queued or scheduled job "
            "can be cancelled.",
            "content": problem,
        },
        "Shed": {
            "description": "Overloaded: the submission was shed by its level; retry after "
            "Retry-After seconds.",
            "headers": retry_after,
            "content": problem,
        },
    }


def _json(schema: str) -> dict[str, object]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
