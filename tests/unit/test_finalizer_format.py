from __future__ import annotations

import json

from slackwater.domain.request import RequestStatus
from slackwater.ports import FinishedRequest
from slackwater.runtime.finalizer import output_line


def test_success_line_is_openai_batch_output() -> None:
    line = output_line(
        FinishedRequest(1, 'id"1', RequestStatus.SUCCEEDED, 200, b'{"object":"list"}', "req_1")
    )
    assert line.endswith(b"\n")
    assert json.loads(line) == {
        "id": "batch_req_1",
        "custom_id": 'id"1',
        "response": {"status_code": 200, "request_id": "req_1", "body": {"object": "list"}},
        "error": None,
    }


def test_unrun_requests_carry_an_error_code() -> None:
    for status, code in (
        (RequestStatus.CANCELLED, "batch_cancelled"),
        (RequestStatus.EXPIRED, "batch_expired"),
    ):
        data = json.loads(output_line(FinishedRequest(2, "c", status, None, None, "req_2")))
        assert data["response"] is None and data["error"]["code"] == code


def test_routed_results_carry_the_route_in_an_extension_field() -> None:
    route = b'{"model":"cheap","reason":"cheapest"}'
    for body in (b'{"object":"list"}', b"{}"):
        request = FinishedRequest(1, "c", RequestStatus.SUCCEEDED, 200, body, "req_1", route)
        data = json.loads(output_line(request))["response"]["body"]
        assert data["slackwater"] == {"route": {"model": "cheap", "reason": "cheapest"}}
