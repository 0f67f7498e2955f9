"""Fake provider batch APIs on loopback, speaking OpenAI's Batch API and Anthropic's
Message Batches API wire formats (documented fields, statuses, errors, expiry, partial
results). State lives in memory; a batch moves one status forward each time it is read.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}"


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _last_user(messages: list[dict[str, Any]]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    content = users[-1]["content"] if users else ""
    return content if isinstance(content, str) else json.dumps(content)


@dataclass
class Behaviour:
    """How a fake provider misbehaves; tests set it."""

    polls_to_finish: int = 2  # status reads before a batch ends
    expire_after: int | None = None  # lines answered before the batch expires
    reject_model: str | None = None  # requests naming it fail as invalid
    calls: list[str] = field(default_factory=list)  # every custom_id the provider ran


# -- OpenAI Batch API ------------------------------------------------------------------


def openai_app(api_key: str = "test-key", behaviour: Behaviour | None = None) -> FastAPI:
    app = FastAPI()
    state: dict[str, Any] = {"files": {}, "batches": {}, "reads": {}}
    app.state.behaviour = behaviour or Behaviour()
    app.state.data = state

    def check(authorization: str | None) -> None:
        if authorization != f"Bearer {api_key}":
            raise HTTPException(
                401,
                detail={
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )

    @app.exception_handler(HTTPException)
    async def _error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(exc.detail, status_code=exc.status_code)

    def file_json(file_id: str) -> dict[str, Any]:
        f = state["files"][file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(f["content"]),
            "created_at": f["created_at"],
            "filename": f["filename"],
            "purpose": f["purpose"],
        }

    def add_file(content: bytes, filename: str, purpose: str) -> str:
        file_id = _id("file-")
        state["files"][file_id] = {
            "content": content,
            "filename": filename,
            "purpose": purpose,
            "created_at": int(time.time()),
        }
        return file_id

    @app.post("/v1/files")
    async def create_file(
        file: UploadFile = File(...),
        purpose: str = Form(...),
        authorization: str | None = Header(None),
    ) -> dict[str, Any]:
        check(authorization)
        return file_json(add_file(await file.read(), file.filename or "upload.jsonl", purpose))

    @app.get("/v1/files/{file_id}/content")
    async def file_content(
        file_id: str, authorization: str | None = Header(None)
    ) -> PlainTextResponse:
        check(authorization)
        if file_id not in state["files"]:
            raise HTTPException(
                404,
                detail={
                    "error": {
                        "message": f"No such File object: {file_id}",
                        "type": "invalid_request_error",
                    }
                },
            )
        return PlainTextResponse(state["files"][file_id]["content"].decode())

    @app.post("/v1/batches")
    async def create_batch(
        request: Request, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        check(authorization)
        body = await request.json()
        if body.get("input_file_id") not in state["files"]:
            raise HTTPException(
                400,
                detail={
                    "error": {
                        "message": "input_file_id not found",
                        "type": "invalid_request_error",
                        "param": "input_file_id",
                    }
                },
            )
        batch_id = _id("batch_")
        now = int(time.time())
        state["batches"][batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        state["reads"][batch_id] = 0
        return state["batches"][batch_id]

    @app.get("/v1/batches")
    async def list_batches(
        limit: int = 20, after: str | None = None, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        check(authorization)
        items = sorted(state["batches"].values(), key=lambda b: b["id"], reverse=True)
        if after:
            items = [b for b in items if b["id"] < after]
        page = items[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }

    @app.get("/v1/batches/{batch_id}")
    async def get_batch(batch_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        check(authorization)
        batch = state["batches"].get(batch_id)
        if batch is None:
            raise HTTPException(
                404,
                detail={
                    "error": {
                        "message": f"No batch found with id '{batch_id}'.",
                        "type": "invalid_request_error",
                    }
                },
            )
        state["reads"][batch_id] += 1
        if batch["status"] == "validating":
            validate(batch)
        elif (
            batch["status"] == "in_progress"
            and state["reads"][batch_id] >= app.state.behaviour.polls_to_finish
        ):
            finish(batch)
        return batch

    def validate(batch: dict[str, Any]) -> None:
        errors = []
        lines = state["files"][batch["input_file_id"]]["content"].decode().splitlines()
        for n, raw in enumerate(lines, start=1):
            line = json.loads(raw)
            if line.get("url") != batch["endpoint"]:
                errors.append(
                    {
                        "code": "invalid_url",
                        "line": n,
                        "message": (
                            "The URL provided for this request does not match the batch endpoint."
                        ),
                        "param": "url",
                    }
                )
        now = int(time.time())
        if errors:
            batch.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            return
        batch.update(status="in_progress", in_progress_at=now)
        batch["request_counts"]["total"] = len(lines)

    def finish(batch: dict[str, Any]) -> None:
        behaviour: Behaviour = app.state.behaviour
        lines = [
            json.loads(raw)
            for raw in state["files"][batch["input_file_id"]]["content"].decode().splitlines()
        ]
        out, err = [], []
        for n, line in enumerate(lines):
            rid = _id("batch_req_")
            if behaviour.expire_after is not None and n >= behaviour.expire_after:
                err.append(
                    {
                        "id": rid,
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": {
                            "code": "batch_expired",
                            "message": (
                                "This request could not be executed before the completion"
                                " window expired."
                            ),
                        },
                    }
                )
                continue
            behaviour.calls.append(line["custom_id"])
            body = line["body"]
            if body.get("model") == behaviour.reject_model:
                err.append(
                    {
                        "id": rid,
                        "custom_id": line["custom_id"],
                        "response": {
                            "status_code": 400,
                            "request_id": rid,
                            "body": {
                                "error": {
                                    "message": f"The model `{body['model']}` does not exist",
                                    "type": "invalid_request_error",
                                    "param": "model",
                                    "code": "model_not_found",
                                }
                            },
                        },
                        "error": None,
                    }
                )
                continue
            prompt = _words(_last_user(body.get("messages", [])))
            answer = f"batched: {_last_user(body.get('messages', []))}"
            out.append(
                {
                    "id": rid,
                    "custom_id": line["custom_id"],
                    "response": {
                        "status_code": 200,
                        "request_id": rid,
                        "body": {
                            "id": _id("chatcmpl-"),
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": body.get("model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": answer},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": prompt,
                                "completion_tokens": _words(answer),
                                "total_tokens": prompt + _words(answer),
                            },
                        },
                    },
                    "error": None,
                }
            )
        now = int(time.time())
        expired = behaviour.expire_after is not None and behaviour.expire_after < len(lines)
        batch.update(
            status="expired" if expired else "completed",
            finalizing_at=now,
            **{("expired_at" if expired else "completed_at"): now},
        )
        batch["request_counts"].update(completed=sum(1 for o in out), failed=len(err))
        if out:
            batch["output_file_id"] = add_file(
                "".join(json.dumps(o) + "\n" for o in out).encode(), "output.jsonl", "batch_output"
            )
        if err:
            batch["error_file_id"] = add_file(
                "".join(json.dumps(e) + "\n" for e in err).encode(), "errors.jsonl", "batch_output"
            )

    return app


# -- Anthropic Message Batches API -------------------------------------------------------


def anthropic_app(api_key: str = "test-key", behaviour: Behaviour | None = None) -> FastAPI:
    app = FastAPI()
    batches: dict[str, dict[str, Any]] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    reads: dict[str, int] = {}
    app.state.behaviour = behaviour or Behaviour()

    def error(status: int, kind: str, message: str) -> HTTPException:
        return HTTPException(
            status, detail={"type": "error", "error": {"type": kind, "message": message}}
        )

    @app.exception_handler(HTTPException)
    async def _error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(exc.detail, status_code=exc.status_code)

    def check(key: str | None, version: str | None) -> None:
        if key != api_key:
            raise error(401, "authentication_error", "invalid x-api-key")
        if not version:
            raise error(400, "invalid_request_error", "anthropic-version: header is required")

    @app.post("/v1/messages/batches")
    async def create(
        request: Request,
        x_api_key: str | None = Header(None),
        anthropic_version: str | None = Header(None),
    ) -> dict[str, Any]:
        check(x_api_key, anthropic_version)
        body = await request.json()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise error(400, "invalid_request_error", "requests: field required")
        for i, item in enumerate(requests):
            params = item.get("params") or {}
            for name in ("model", "max_tokens", "messages"):
                if name not in params:
                    raise error(
                        400, "invalid_request_error", f"requests.{i}.params.{name}: Field required"
                    )
        batch_id = _id("msgbatch_")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        batches[batch_id] = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {
                "processing": len(requests),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "ended_at": None,
            "created_at": now,
            "expires_at": now,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": None,
            "_requests": requests,
        }
        reads[batch_id] = 0
        return public(batches[batch_id])

    def public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    @app.get("/v1/messages/batches/{batch_id}")
    async def get(
        batch_id: str,
        request: Request,
        x_api_key: str | None = Header(None),
        anthropic_version: str | None = Header(None),
    ) -> dict[str, Any]:
        check(x_api_key, anthropic_version)
        if batch_id not in batches:
            raise error(404, "not_found_error", f"batch {batch_id} not found")
        batch = batches[batch_id]
        reads[batch_id] += 1
        if (
            batch["processing_status"] == "in_progress"
            and reads[batch_id] >= app.state.behaviour.polls_to_finish
        ):
            end(batch, str(request.base_url).rstrip("/"))
        return public(batch)

    def end(batch: dict[str, Any], base: str) -> None:
        behaviour: Behaviour = app.state.behaviour
        lines = []
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for n, item in enumerate(batch["_requests"]):
            params = item["params"]
            if behaviour.expire_after is not None and n >= behaviour.expire_after:
                result: dict[str, Any] = {"type": "expired"}
            elif params["model"] == behaviour.reject_model:
                behaviour.calls.append(item["custom_id"])
                result = {
                    "type": "errored",
                    "error": {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "message": f"model: {params['model']}",
                        },
                    },
                }
            else:
                behaviour.calls.append(item["custom_id"])
                prompt = _words(_last_user(params["messages"])) + _words(params.get("system", ""))
                text = f"batched: {_last_user(params['messages'])}"
                words = text.split()[: params["max_tokens"]]
                result = {
                    "type": "succeeded",
                    "message": {
                        "id": _id("msg_"),
                        "type": "message",
                        "role": "assistant",
                        "model": params["model"],
                        "content": [{"type": "text", "text": " ".join(words)}],
                        "stop_reason": "max_tokens"
                        if len(words) < len(text.split())
                        else "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": prompt, "output_tokens": len(words)},
                    },
                }
            counts[result["type"]] += 1
            lines.append({"custom_id": item["custom_id"], "result": result})
        results[batch["id"]] = lines
        batch.update(
            processing_status="ended",
            request_counts=counts,
            ended_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            results_url=f"{base}/v1/messages/batches/{batch['id']}/results",
        )

    @app.get("/v1/messages/batches/{batch_id}/results")
    async def batch_results(
        batch_id: str,
        x_api_key: str | None = Header(None),
        anthropic_version: str | None = Header(None),
    ) -> PlainTextResponse:
        check(x_api_key, anthropic_version)
        if batch_id not in results:
            raise error(404, "not_found_error", f"no results for {batch_id}: still processing")
        return PlainTextResponse(
            "".join(json.dumps(line) + "\n" for line in results[batch_id]),
            media_type="application/binary",
        )

    return app
