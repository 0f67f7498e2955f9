"""Price and availability feeds: trace files (the shared format) and AWS spot prices."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from slackwater.domain.errors import ConfigError
from slackwater.feeds import open_feed
from slackwater.feeds.static import StaticFeed
from slackwater.feeds.trace import TraceFeed, load_trace

SHARED = Path(__file__).parents[3] / "shared" / "data" / "spot-traces"
FIXTURES = Path(__file__).parents[1] / "fixtures"
NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_loads_a_shared_spot_trace() -> None:
    path = SHARED / "availability/1-node/aws-02-15-2023/us-east-1a_v100_1.json"
    if not path.exists():
        pytest.skip("shared traces are not next to this checkout")
    trace = load_trace(path)
    assert trace.tick_seconds == 195
    assert len(trace) == 20158
    assert set(trace.capacity) == {0, 1}
    # 0 in the file is spot there (as the traces' own simulator reads it): us-east-1a
    # had spot 83% of the time in Feb 2023.
    assert 0.82 < sum(trace.capacity) / len(trace) < 0.84


def test_price_trace_is_resampled_onto_the_availability_ticks(tmp_path: Path) -> None:
    capacity = write(tmp_path / "a.json", {"metadata": {"gap_seconds": 60}, "data": [0, 0, 1, 0]})
    prices = write(
        tmp_path / "p.json",
        {"metadata": {"gap_seconds": 120, "unit": "usd_per_hour"}, "data": [0.9, "1.5"]},
    )
    trace = load_trace(capacity, prices)
    assert trace.spot_prices == [Decimal("0.9"), Decimal("0.9"), Decimal("1.5"), Decimal("1.5")]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"data": [1]}, "field metadata is missing"),
        ({"metadata": {"gap_seconds": 0}, "data": [1]}, "metadata.gap_seconds"),
        ({"metadata": {"gap_seconds": 60}, "data": []}, "field data must be a non-empty list"),
        ({"metadata": {"gap_seconds": 60}, "data": [1, "x"]}, r"data\[1\] = 'x' is not a number"),
        ({"metadata": {"gap_seconds": 60}, "data": [1, -1]}, r"data\[1\] = -1 is negative"),
        ([1, 2], "expected an object"),
    ],
)
def test_bad_traces_name_the_file_and_field(tmp_path: Path, document: object, message: str) -> None:
    path = write(tmp_path / "bad.json", document)
    with pytest.raises(ConfigError, match=message) as error:
        load_trace(path)
    assert "bad.json" in str(error.value)


async def test_trace_feed_replays_from_its_start(tmp_path: Path) -> None:
    # 0: a spot instance could be had; 1: it could not (the shared traces' format).
    path = write(tmp_path / "t.json", {"metadata": {"gap_seconds": 60}, "data": [0, 0, 1, 0]})
    feed = open_feed(f"trace:{path}", Decimal("0.9"), NOW)
    assert isinstance(feed, TraceFeed)
    states = [await feed.state(NOW + timedelta(seconds=60 * i)) for i in range(6)]
    assert [s.available for s in states] == [True, True, False, True, True, True]
    assert states[3].mean_uptime_seconds == 120.0  # one 2-tick run seen before tick 3
    assert states[0].price_per_hour == Decimal("0.9")


async def test_static_feed_and_unknown_feeds() -> None:
    feed = open_feed("static", Decimal("3.06"), NOW)
    assert isinstance(feed, StaticFeed)
    assert (await feed.state(NOW)).price_per_hour == Decimal("3.06")
    with pytest.raises(ConfigError, match="unknown price feed 'gcp:x'"):
        open_feed("gcp:x", Decimal(1), NOW)


def stubbed_ec2() -> object:
    """A real boto3 EC2 client whose HTTP layer answers from the recorded pages."""
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber

    client = boto3.client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    pages = json.loads((FIXTURES / "aws/describe_spot_price_history.json").read_text())["pages"]
    for page in pages:
        for item in page["SpotPriceHistory"]:
            item["Timestamp"] = datetime.fromisoformat(item["Timestamp"])
        stubber.add_response("describe_spot_price_history", page)
    stubber.activate()
    return client


async def test_aws_feed_takes_the_latest_price_across_pages() -> None:
    from slackwater.feeds.aws import AwsSpotPriceFeed

    feed = AwsSpotPriceFeed("p3.2xlarge", "us-east-1a", client=stubbed_ec2())
    state = await feed.state(NOW)
    assert state.available
    assert state.price_per_hour == Decimal("1.024500")
    # Within the refresh interval the price is not fetched again (the stub has no more
    # responses: a second call would fail and fall back to the same state anyway).
    assert await feed.state(NOW + timedelta(seconds=60)) == state


async def test_aws_feed_keeps_the_last_price_when_a_fetch_fails() -> None:
    from slackwater.feeds.aws import AwsSpotPriceFeed

    feed = AwsSpotPriceFeed("p3.2xlarge", "us-east-1a", client=stubbed_ec2(), refresh_seconds=1)
    first = await feed.state(NOW)
    # The stub has run out of recorded pages: botocore raises, the feed keeps its price.
    later = await feed.state(NOW + timedelta(minutes=10))
    assert later == first
