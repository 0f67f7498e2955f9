"""Price and availability feeds of pools: static, trace replay, AWS spot prices, plug-ins.

A feed is named by a spec string in a pool's config: `static`, `trace:PATH`,
`aws:INSTANCE_TYPE@ZONE`, or `NAME:ARG` for a feed registered under the
`slackwater.feeds` entry point group (a callable `(arg, price_per_hour) -> PriceFeed`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path

from slackwater.domain.errors import ConfigError
from slackwater.feeds.static import StaticFeed
from slackwater.feeds.trace import TraceFeed, load_trace
from slackwater.ports import PriceFeed


def open_feed(spec: str, price_per_hour: Decimal, start: datetime) -> PriceFeed:
    """The feed a pool's `feed` setting names; `start` anchors a replayed trace."""
    kind, _, arg = spec.partition(":")
    if kind == "static":
        return StaticFeed(price_per_hour)
    if kind == "trace":
        return TraceFeed(load_trace(Path(arg)), start, price_per_hour)
    if kind == "aws":
        from slackwater.feeds.aws import AwsSpotPriceFeed

        instance_type, _, zone = arg.partition("@")
        return AwsSpotPriceFeed(instance_type, zone or None)
    for plugin in entry_points(group="slackwater.feeds"):
        if plugin.name == kind:
            feed: PriceFeed = plugin.load()(arg, price_per_hour)
            return feed
    raise ConfigError(
        f"unknown price feed {spec!r}: use static, trace:PATH, aws:TYPE@ZONE "
        "or a feed registered under the slackwater.feeds entry points"
    )
