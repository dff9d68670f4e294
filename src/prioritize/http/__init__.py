"""HTTP integrations: the ASGI middleware, outbound propagation and throttling."""

from __future__ import annotations
