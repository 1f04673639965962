"""Compare the catalog's token prices with a price data file in the models.dev format, and write the
differences back into the YAML in place (the number on its own line changes; comments stay).

The data file is one the user downloads (https://models.dev/api.json); a provider is looked up by
its `price_sheet_id` (default: its name), a model by its upstream name. Prices are USD per million
tokens on both sides: cost.input, cost.output, cost.cache_read, cost.cache_write, and
cost.context_over_200k for a tier above 200k input tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import load_catalog
from .config.load import load_dirs

FIELDS = {"input": "input_per_million", "output": "output_per_million", "cache_read": "cached_input_per_million",
          "cache_write": "cache_write_per_million"}
TIER_KEY, TIER_THRESHOLD = "context_over_200k", 200_000


class PriceDataError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PriceDiff:
    file: str
    line: int
    model: str
    key: str  # pricing.input_per_million, pricing.tiers.0.output_per_million, ...
    ours: float | None
    theirs: float

    def __str__(self) -> str:
        ours = "not set" if self.ours is None else f"{self.ours:g}"
        return f"{self.file}:{self.line}: model {self.model!r}: {self.key} is {ours}, the price data says {self.theirs:g}"


def read_price_data(path: str | Path) -> dict[str, Any]:
    """models.dev's api.json: providers by id (at the top level, or under `providers`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PriceDataError(f"{path}: cannot read the price data: {exc}") from None
    providers = data.get("providers", data) if isinstance(data, dict) else None
    if not isinstance(providers, dict) or not all(isinstance(p, dict) for p in providers.values()):
        raise PriceDataError(f"{path}: not price data in the models.dev format ({{provider_id: {{models: {{...}}}}}})")
    return providers


def compare(dirs: Iterable[str | Path], data: Mapping[str, Any], env: Mapping[str, str]) -> tuple[list[PriceDiff], list[str]]:
    """(every price that differs, with its file and line; the models the data has no price for)."""
    dirs = list(dirs)
    catalog, _ = load_catalog(dirs, env)
    docs = load_dirs([Path(d) for d in dirs]).models
    diffs, unmatched = [], []
    for name, model in sorted(catalog.models.items()):
        if model.kind != "chat" or model.pricing is None or name not in docs or model.deployments:
            continue
        provider = catalog.providers.get(model.provider)
        sheet_id = provider.price_sheet_id if provider is not None and provider.price_sheet_id else model.provider
        cost = (((data.get(sheet_id) or {}).get("models") or {}).get(model.upstream) or {}).get("cost")
        if not isinstance(cost, dict):
            unmatched.append(f"{name} ({sheet_id}/{model.upstream})")
            continue
        doc = docs[name]
        pricing = doc.data.get("pricing", {})
        for theirs_key, ours_key in FIELDS.items():
            diffs += _diff(doc, name, ("pricing", ours_key), pricing.get(ours_key), cost.get(theirs_key))
        over = cost.get(TIER_KEY)
        if isinstance(over, dict):
            tiers = pricing.get("tiers") or []
            index = next((i for i, t in enumerate(tiers) if t.get("above_input_tokens") == TIER_THRESHOLD), None)
            if index is None:
                file, line = doc.where(("pricing",))
                diffs.append(PriceDiff(file, line, name, f"pricing.tiers (above {TIER_THRESHOLD})", None,
                                       float(over.get("input", 0))))
                continue
            for theirs_key, ours_key in FIELDS.items():
                diffs += _diff(doc, name, ("pricing", "tiers", index, ours_key), tiers[index].get(ours_key), over.get(theirs_key))
    return diffs, unmatched


def _diff(doc: Any, model: str, path: tuple[Any, ...], ours: Any, theirs: Any) -> list[PriceDiff]:
    if not isinstance(theirs, (int, float)) or isinstance(theirs, bool):
        return []
    if isinstance(ours, (int, float)) and abs(ours - theirs) <= 1e-9 * max(1.0, abs(theirs)):
        return []
    file, line = doc.where(path if ours is not None else path[:-1])
    return [PriceDiff(file, line, model, ".".join(map(str, path)), ours, float(theirs))]


def write(diffs: Iterable[PriceDiff]) -> list[PriceDiff]:
    """Change each differing number where it is written; return the diffs that could not be written
    in place (a price not set yet: add it by hand)."""
    left = []
    by_file: dict[str, list[PriceDiff]] = {}
    for diff in diffs:
        if diff.ours is None:
            left.append(diff)
        else:
            by_file.setdefault(diff.file, []).append(diff)
    for file, file_diffs in by_file.items():
        lines = Path(file).read_text(encoding="utf-8").splitlines(keepends=True)
        for diff in file_diffs:
            key = diff.key.rsplit(".", 1)[-1]
            pattern = re.compile(rf"(\b{re.escape(key)}:\s*)(-?[0-9][0-9_.eE+-]*)")
            text = lines[diff.line - 1]
            if len(pattern.findall(text)) != 1:
                left.append(diff)
                continue
            lines[diff.line - 1] = pattern.sub(rf"\g<1>{diff.theirs:g}", text)
        Path(file).write_text("".join(lines), encoding="utf-8")
    return left
