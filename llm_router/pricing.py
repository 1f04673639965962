"""Cost from usage and the model's declared prices, by what was billed. Unknown price → None, never
a silent 0."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config.model import Pricing
from .types import CostBreakdown, Usage

PER = 1_000_000
# the other kinds: what each is billed by, as (price field, its unit's size, usage field)
UNITS = {
    "embed": (("input_per_million", PER, "input_tokens"),),
    "rerank": (("per_search_unit", 1, "search_units"), ("input_per_million", PER, "input_tokens")),
    "speech": (("per_million_characters", PER, "characters"),),
    "transcribe": (("per_audio_second", 1, "audio_seconds"),),
}


def unit_price(pricing: Pricing | None, kind: str) -> float:
    """One number to rank deployments by price (`cheapest`): input + output per million tokens, or
    the price of one image (the cheapest size); an unknown price ranks last."""
    if pricing is None:
        return float("inf")
    if kind == "video":
        by_param = pricing.per_output_second_by.prices.values() if pricing.per_output_second_by else ()
        return min((p for p in (pricing.per_output_second, *by_param) if p is not None), default=float("inf"))
    if kind in UNITS:
        prices = [getattr(pricing, name) / size for name, size, _ in UNITS[kind] if getattr(pricing, name) is not None]
        return sum(prices) if prices else float("inf")
    if kind == "image":
        sizes = [p for by_size in pricing.per_image_by_quality.values() for p in by_size.values()]
        prices = [p for p in (pricing.per_image, *pricing.per_image_by_size.values(), *sizes) if p is not None]
        return min(prices, default=float("inf"))
    return (pricing.input_per_million or 0.0) + (pricing.output_per_million or 0.0)


def summary(pricing: Pricing | None, kind: str) -> str:
    """The price in a few words, for `llm-router models`."""
    if pricing is None:
        return "unknown"
    if kind == "image":
        return f"${pricing.per_image:g}/image" if pricing.per_image is not None else "by size"
    if kind == "video":
        by_param = pricing.per_output_second_by
        each = f"${pricing.per_output_second:g}/s of video" if pricing.per_output_second is not None else ""
        return " ".join(filter(None, [each, f"by {by_param.param}" if by_param is not None else ""]))
    units = {"per_search_unit": (1, "/search unit"), "per_million_characters": (1, " per M characters"),
             "per_audio_second": (60, "/min of audio")}
    for name, (scale, unit) in units.items():
        value = getattr(pricing, name)
        if value is not None:
            return f"${value * scale:g}{unit}"
    if pricing.input_per_million is not None and pricing.output_per_million is not None:
        return f"${pricing.input_per_million:g}/${pricing.output_per_million:g} per M"
    if pricing.input_per_million is not None:
        return f"${pricing.input_per_million:g} per M input"
    return f"${pricing.per_request:g}/request" if pricing.per_request is not None else "unknown"


def price(pricing: Pricing | None, kind: str, usage: Usage, params: Mapping[str, Any]) -> CostBreakdown | None:
    """The cost of one successful call, or None when its price cannot be known."""
    if pricing is None:
        return None
    fees = pricing.per_request or 0.0
    tokens_priced = pricing.input_per_million is not None and pricing.output_per_million is not None
    if kind == "image" and not (tokens_priced and usage.output_tokens is not None):
        each = _per_image(pricing, params)
        if each is None:
            return None
        count = params.get("n", 1)
        return CostBreakdown(output=each * (count if type(count) is int and count > 0 else 1), fees=fees)
    if kind == "video":
        return _video(pricing, usage, params, fees)
    if kind in UNITS and not (kind == "transcribe" and usage.audio_seconds is None and tokens_priced):
        return _by_units(pricing, UNITS[kind], usage, fees)
    if not tokens_priced or usage.input_tokens is None or usage.output_tokens is None:
        return None
    return _by_tokens(pricing, usage, fees)


def _by_units(pricing: Pricing, units: tuple[tuple[str, int, str], ...], usage: Usage, fees: float) -> CostBreakdown | None:
    """Each price the model states times what the reply (or the request) says was used; None when
    a priced quantity is unknown."""
    total = 0.0
    for name, size, used in units:
        unit_price = getattr(pricing, name)
        if unit_price is None:
            continue
        count = getattr(usage, used)
        if count is None:
            return None
        total += unit_price * count / size
    return CostBreakdown(input=total, fees=fees)


def _video(pricing: Pricing, usage: Usage, params: Mapping[str, Any], fees: float) -> CostBreakdown | None:
    """Seconds of video (the reply's count, else the param `seconds_from` names, else its default)
    times the price per second (by the param `per_output_second_by` names, else per_output_second)."""
    each = pricing.per_output_second
    by_param = pricing.per_output_second_by
    if by_param is not None and isinstance(params.get(by_param.param), str | int):
        each = by_param.prices.get(str(params[by_param.param]), each)
    seconds = usage.video_seconds
    if seconds is None and pricing.seconds_from is not None:
        seconds = _positive(params.get(pricing.seconds_from.param)) or pricing.seconds_from.default
    if each is None or seconds is None:
        return None
    return CostBreakdown(output=each * seconds, fees=fees)


def _per_image(pricing: Pricing, params: Mapping[str, Any]) -> float | None:
    size, quality = params.get("size"), params.get("quality")
    by_size = pricing.per_image_by_quality.get(quality, {}) if isinstance(quality, str) else {}
    if isinstance(size, str):
        found = by_size.get(size, pricing.per_image_by_size.get(size))
        if found is not None:
            return found
    return pricing.per_image


def _by_tokens(pricing: Pricing, usage: Usage, fees: float) -> CostBreakdown:
    assert usage.input_tokens is not None and usage.output_tokens is not None
    assert pricing.input_per_million is not None and pricing.output_per_million is not None
    input_price, output_price = pricing.input_per_million, pricing.output_per_million
    cached_price, write_price = pricing.cached_input_per_million, pricing.cache_write_per_million
    for tier in pricing.tiers:  # ascending: the highest threshold exceeded wins, for the whole request
        if usage.input_tokens > tier.above_input_tokens:
            input_price = _or(tier.input_per_million, input_price)
            output_price = _or(tier.output_per_million, output_price)
            cached_price = tier.cached_input_per_million if tier.cached_input_per_million is not None else cached_price
            write_price = tier.cache_write_per_million if tier.cache_write_per_million is not None else write_price
    cached = usage.cached_input_tokens or 0
    written = usage.cache_write_tokens or 0
    uncached = max(usage.input_tokens - cached - written, 0)
    reasoning = min(usage.reasoning_tokens or 0, usage.output_tokens)
    return CostBreakdown(
        input=uncached * input_price / PER,
        cached_input=cached * _or(cached_price, input_price) / PER,
        cache_write=written * _or(write_price, input_price) / PER,
        output=(usage.output_tokens - reasoning) * output_price / PER,
        reasoning=reasoning * _or(pricing.reasoning_per_million, output_price) / PER,
        fees=fees,
    )


def _positive(value: Any) -> float | None:
    """A positive number given as a number or as text ("8", as Sora takes its seconds); else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 < number < float("inf") else None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
