"""slackwater: self-hosted, cost-first batch and asynchronous AI inference."""

__version__ = "0.1.0"
