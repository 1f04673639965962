"""Cost from usage and the model's declared prices. Unknown price → None, never a silent 0."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config.model import ModelConfig, Pricing
from .types import Usage


def cost_of(model: ModelConfig, usage: Usage, params: Mapping[str, Any]) -> float | None:
    return price(model.pricing, model.kind, usage, params)


def unit_price(pricing: Pricing | None, kind: str) -> float:
    """One number to rank deployments by price (`cheapest`): input + output per million tokens, or
    the price of one image (the cheapest size); an unknown price ranks last."""
    if pricing is None:
        return float("inf")
    if kind == "image":
        prices = [p for p in (pricing.per_image, *pricing.per_image_by_size.values()) if p is not None]
        return min(prices, default=float("inf"))
    return (pricing.input_per_million or 0.0) + (pricing.output_per_million or 0.0)


def price(pricing: Pricing | None, kind: str, usage: Usage, params: Mapping[str, Any]) -> float | None:
    if pricing is None:
        return None
    if kind == "image":
        size = params.get("size")
        price = pricing.per_image_by_size.get(size, pricing.per_image) if isinstance(size, str) else pricing.per_image
        if price is None:
            return None
        count = params.get("n", 1)
        return price * (count if isinstance(count, int) and count > 0 else 1)
    if usage.input_tokens is None or usage.output_tokens is None:
        return None
    assert pricing.input_per_million is not None and pricing.output_per_million is not None
    cached = usage.cached_input_tokens or 0
    written = usage.cache_write_tokens or 0
    uncached = max(usage.input_tokens - cached - written, 0)
    cached_price = pricing.cached_input_per_million if pricing.cached_input_per_million is not None else pricing.input_per_million
    write_price = pricing.cache_write_per_million if pricing.cache_write_per_million is not None else pricing.input_per_million
    return (
        uncached * pricing.input_per_million
        + cached * cached_price
        + written * write_price
        + usage.output_tokens * pricing.output_per_million
    ) / 1_000_000
