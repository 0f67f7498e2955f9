"""The dashboard's sign-in and its guards, over HTTP (the pages themselves are driven in
a real browser by tests/browser): the cookie opens /ui only, a bad key is refused, a
form from another site is refused, a read-only key cannot press the buttons."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.integration.conftest import Server, chat_line


async def test_sign_in_opens_the_dashboard_and_only_the_dashboard(
    server_factory: Callable[..., Any],
) -> None:
    server: Server = await server_factory()
    key, _ = await server.services.keys.create("team-a")
    reader, _ = await server.services.keys.create("team-a", scope="read")
    batch = await server.submit([chat_line(0)], headers={"Authorization": f"Bearer {key}"})
    client = server.client
    unsigned = await client.get("/ui/batches")
    assert unsigned.status_code == 303 and unsigned.headers["location"] == "/ui/login"
    bad = await client.post("/ui/login", data={"key": "sk-nope"})
    assert bad.status_code == 401 and "not valid" in bad.text
    good = await client.post("/ui/login", data={"key": key})
    assert good.status_code == 303 and "httponly" in good.headers["set-cookie"].lower()
    cookie = {"cookie": f"slackwater_key={key}"}
    page = await client.get("/ui/batches", headers=cookie)
    assert page.status_code == 200 and batch["id"] in page.text
    # Filters: by model (known once the batch is validated), by age; the live rows keep
    # them.
    await server.wait(batch["id"], headers={"Authorization": f"Bearer {key}"})
    other = await client.get("/ui/batches?model=slow&hours=1", headers=cookie)
    assert batch["id"] not in other.text and "match these filters" in other.text
    assert 'hx-get="/ui/batches/rows?model=slow&amp;hours=1.0"' in other.text
    same = await client.get("/ui/batches/rows?model=echo&hours=24", headers=cookie)
    assert batch["id"] in same.text
    one = await client.get(f"/ui/batches/{batch['id']}", headers=cookie)
    assert one.status_code == 200 and 'id="requests"' in one.text, one.text[-2000:]
    # The cookie is the dashboard's: the API itself still wants the header.
    api = await client.get("/v1/batches", headers=cookie)
    assert api.status_code == 401
    # A form posted from another site is refused; a read-only key cannot press buttons.
    forged = await client.post(
        f"/ui/batches/{batch['id']}/cancel", headers={**cookie, "origin": "https://evil"}
    )
    assert forged.status_code == 403
    read_only = await client.post(
        f"/ui/batches/{batch['id']}/cancel", headers={"cookie": f"slackwater_key={reader}"}
    )
    assert read_only.status_code == 403
    assert (await client.get("/static/vendor/htmx-2.0.11.min.js")).status_code == 200


async def test_the_sessions_and_predictions_pages(server_factory: Callable[..., Any]) -> None:
    server: Server = await server_factory(
        agents_app="tests.integration.agents_app:agents", session_poll_seconds=0.02
    )
    session = await server.services.sessions.start("default", "summarise", {"texts": ["a"]})
    for _ in range(200):
        if (await server.services.store.get_session(None, session.id)).waiting is not None:
            break
        await asyncio.sleep(0.02)
    page = await server.client.get("/ui/sessions")
    assert page.status_code == 200
    assert f'data-session="{session.id}"' in page.text and "event &#39;go&#39;" in page.text
    assert "1 waiting" in page.text
    jobs = await server.client.get("/ui/predictions")
    assert jobs.status_code == 200 and "No dataset jobs." in jobs.text


async def test_the_capacity_page_shows_pools_queue_and_placement(
    server_factory: Callable[..., Any],
) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    batch = await server.submit([chat_line(i) for i in range(5)])
    await server.wait(batch["id"], lambda b: b["status"] == "in_progress")
    page = await server.client.get("/ui/capacity")
    assert page.status_code == 200
    assert "<td>local</td>" in page.text  # the default pool
    queue = page.text.split('id="queue"')[1].split("</table>")[0]
    assert "<td>echo</td><td>5</td>" in queue  # five waiting, nothing has run
    assert batch["id"] in page.text.split('id="placement"')[1]


async def test_the_router_page_shows_the_mix_escalations_and_quality(
    server_factory: Callable[..., Any],
) -> None:
    from tests.integration.test_cascade import SCHEMA, models

    server: Server = await server_factory(models=models())
    wants_json = {"type": "json_schema", "json_schema": {"name": "echo", "schema": SCHEMA}}
    lines = [chat_line(0, model="auto", response_format=wants_json), chat_line(1, model="auto")]
    done = await server.wait((await server.submit(lines))["id"])
    assert done["status"] == "completed"
    page = (await server.client.get("/ui/router")).text
    assert "1 of the last 2 routed requests" in page
    reasons = page.split('id="reasons"')[1].split("</table>")[0]
    assert "prose: invalid JSON" in reasons
    mix = page.split('id="mix"')[1].split("</table>")[0]
    assert "<td>json</td><td>1</td><td>50.0%</td>" in mix
    quality = page.split('id="quality"')[1].split("</table>")[0]
    assert "<td>prose</td><td>default</td><td>0.70</td>" in quality
