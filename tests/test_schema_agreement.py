"""The JSON Schemas in schemas/ and the dataclasses in llm_router/config/model.py say the same thing:
every schema property is a field, every field a property (or a documented derived one), and every
schema `default` is the field's default. The schemas themselves are valid draft 2020-12 and every
property is described for editor completion."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.config import model as m

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


PROVIDER, MODELS, ROUTER = load("provider"), load("models"), load("router")

# schema object ↔ dataclass, as (label, schema object, class)
PAIRS = [
    ("provider", PROVIDER, m.ProviderConfig),
    ("operation", PROVIDER["$defs"]["operation"], m.Operation),
    ("extraction", PROVIDER["$defs"]["extraction"], m.Extraction),
    ("usage", PROVIDER["$defs"]["usage"], m.UsagePaths),
    ("vectors", PROVIDER["$defs"]["extraction"]["properties"]["vectors"], m.VectorPaths),
    ("ranking", PROVIDER["$defs"]["extraction"]["properties"]["ranking"], m.RankingPaths),
    ("binary", PROVIDER["$defs"]["extraction"]["properties"]["binary"], m.BinaryBody),
    ("retry", PROVIDER["$defs"]["retry"], m.RetryPolicy),
    ("backoff", PROVIDER["$defs"]["retry"]["properties"]["backoff"], m.Backoff),
    ("errors", PROVIDER["$defs"]["errors"], m.ErrorPolicy),
    ("classify_rule", PROVIDER["$defs"]["classify_rule"], m.ClassifyRule),
    ("classify_when", PROVIDER["$defs"]["classify_rule"]["properties"]["when"], m.ClassifyWhen),
    ("stream", PROVIDER["$defs"]["stream"], m.StreamSpec),
    ("stream_handler", PROVIDER["$defs"]["stream_handler"], m.StreamHandler),
    ("tool_call_paths", PROVIDER["$defs"]["tool_call_paths"], m.ToolCallPaths),
    ("state_block", PROVIDER["$defs"]["state_block"], m.StateBlock),
    ("call_ids", PROVIDER["$defs"]["operation"]["properties"]["call_ids"], m.CallIds),
    ("conversation", PROVIDER["$defs"]["conversation"], m.Conversation),
    ("conversation_parts", PROVIDER["$defs"]["conversation"]["properties"]["parts"], m.PartTemplates),
    ("cache_breakpoints", PROVIDER["$defs"]["conversation"]["properties"]["cache"], m.CacheBreakpoints),
    ("poll", PROVIDER["$defs"]["poll"], m.PollSpec),
    ("job_url", PROVIDER["$defs"]["job_url"], m.JobUrl),
    ("failed_when", PROVIDER["$defs"]["poll"]["properties"]["failed_when"], m.FailedWhen),
    ("empty_result", PROVIDER["$defs"]["extraction"]["properties"]["empty"], m.EmptyResult),
    ("cancel", PROVIDER["$defs"]["cancel"], m.CancelSpec),
    ("poll_backoff", PROVIDER["$defs"]["poll"]["properties"]["backoff"], m.PollBackoff),
    ("auth", PROVIDER["properties"]["auth"], m.Auth),
    ("token_exchange", PROVIDER["$defs"]["token_exchange"], m.TokenExchange),
    ("google_service_account", PROVIDER["$defs"]["google_service_account"], m.GoogleServiceAccount),
    ("aws_sigv4", PROVIDER["$defs"]["aws_sigv4"], m.AwsSigV4),
    ("var", PROVIDER["$defs"]["var"], m.Var),
    ("timeouts", PROVIDER["properties"]["timeouts"], m.Timeouts),
    ("model", MODELS["$defs"]["model"], m.ModelConfig),
    ("reasoning", MODELS["$defs"]["reasoning"], m.Reasoning),
    ("reasoning_target", MODELS["$defs"]["reasoning"]["properties"]["efforts"]["additionalProperties"], m.ReasoningTarget),
    ("reasoning_budget", MODELS["$defs"]["reasoning"]["properties"]["budget"], m.ReasoningBudget),
    ("reasoning_max_tokens", MODELS["$defs"]["reasoning"]["properties"]["max_tokens"], m.ReasoningMaxTokens),
    ("pricing", MODELS["$defs"]["pricing"]["else"], m.Pricing),
    ("limits", MODELS["$defs"]["limits"], m.Limits),
    ("price_by_param", MODELS["$defs"]["pricing"]["else"]["properties"]["per_output_second_by"], m.PriceByParam),
    ("seconds_from", MODELS["$defs"]["pricing"]["else"]["properties"]["seconds_from"], m.SecondsFrom),
    ("router", ROUTER, m.RouterSettings),
    ("deployment", MODELS["$defs"]["deployment"], m.Deployment),
    ("cooldown", MODELS["$defs"]["cooldown"], m.Cooldown),
    ("router_cooldown", ROUTER["properties"]["cooldown"], m.Cooldown),
    ("budget", ROUTER["properties"]["budgets"]["items"], m.Budget),
    ("state", ROUTER["properties"]["state"], m.StateSettings),
]

# Schema keys that are Python keywords get a trailing underscore.
RENAMED = {("job_url", "from"): "from_", ("classify_when", "in"): "in_"}
# Schema properties with no field: consumed by the loader.
SCHEMA_ONLY = {("provider", "extends"): "merged away by the loader before the provider is built"}
# Fields with no schema property: derived while building.
DERIVED = {
    ("stream", "own_keys"): "the keys of the stream block's own body",
    ("provider", "file"): "the file the provider came from",
    ("model", "name"): "the key under `models:`",
    ("model", "file"): "the file the model came from",
    ("operation", "kind"): "the key under `operations:`",
    ("stream", "route_path"): "`route_by` compiled, when it is a JSONPath",
    ("usage", "head"): "the lookups every usage path begins with, compiled",
    ("usage", "counted"): "each count declared: its place in Usage, its paths, whether it is whole",
    ("extraction", "heads"): "the heads of a chat reply's paths, looked up in one walk",
    ("stream_handler", "heads"): "the heads of the handler's paths, looked up in one walk",
    ("extraction", "headers"): "the `{header: name}` values of finish_reason, id and extra, by field",
}


def field_name(label: str, prop: str) -> str:
    return RENAMED.get((label, prop), prop)


def field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def comparable(value: Any) -> Any:
    """Schema JSON and dataclass values in one form: sets and tuples as sorted lists, placements as their mode."""
    if isinstance(value, m.ParamPlacement):
        return value.mode
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


@pytest.mark.parametrize("label,schema,cls", PAIRS, ids=[p[0] for p in PAIRS])
def test_every_schema_property_is_a_field_and_every_field_a_property(label, schema, cls):
    fields = {f.name for f in dataclasses.fields(cls)}
    props = set(schema["properties"])
    missing_fields = {p for p in props if field_name(label, p) not in fields and (label, p) not in SCHEMA_ONLY}
    assert not missing_fields, f"{label}: schema properties with no field in {cls.__name__}: {sorted(missing_fields)}"
    extra = {f for f in fields if f not in {field_name(label, p) for p in props} and (label, f) not in DERIVED}
    assert not extra, f"{cls.__name__}: fields with no property in the {label} schema: {sorted(extra)}"


@pytest.mark.parametrize("label,schema,cls", PAIRS, ids=[p[0] for p in PAIRS])
def test_every_schema_default_is_the_field_default(label, schema, cls):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for prop, spec in schema["properties"].items():
        if "default" in spec:
            default = field_default(fields[field_name(label, prop)])
            stated = sorted(spec["default"]) if isinstance(default, frozenset) else spec["default"]
            assert comparable(default) == comparable(stated), f"{label}.{prop}"


TRIVIAL = (None, "", (), frozenset(), dataclasses.MISSING)


@pytest.mark.parametrize("label,schema,cls", PAIRS, ids=[p[0] for p in PAIRS])
def test_every_meaningful_field_default_is_stated_in_the_schema(label, schema, cls):
    for f in dataclasses.fields(cls):
        default = field_default(f)
        if (label, f.name) in DERIVED or dataclasses.is_dataclass(default) or default in TRIVIAL or default == {}:
            continue
        prop = next(p for p in schema["properties"] if field_name(label, p) == f.name)
        assert "default" in schema["properties"][prop], f"{label}.{prop}: the field defaults to {default!r}; say so in the schema"


def test_builder_applies_the_dataclass_defaults(write_config):
    config = write_config({
        "providers.d/p.yaml": (
            "name: p\nbase_url: https://p.test\nauth: {header: x-key, env: P_KEY}\n"
            "operations:\n"
            "  chat:\n    path: /chat\n    response: {content: $.text}\n"
            "    stream: {handler: {delta: $.d}}\n"
            "  image:\n    path: /img\n"
            "    poll: {url: {from: $.u}, status: $.s, pending: [P], done: [D], result: {content: $.r}}\n"),
        "models.d/m.yaml": "models:\n  x:\n    provider: p\n    pricing: unknown\n"})
    catalog, problems = load_catalog([config], {"P_KEY": "k"})
    assert problems == []
    provider, model = catalog.providers["p"], catalog.models["x"]
    assert provider.errors == m.ErrorPolicy() and provider.timeouts == m.Timeouts() and provider.auth == m.Auth(env="P_KEY", header="x-key")
    assert (provider.max_connections, provider.abstract) == (100, False)
    chat, image = provider.operations["chat"], provider.operations["image"]
    assert chat.method == "POST" and chat.params == m.ParamPlacement()
    assert chat.response.content_kind == "text" and chat.stream.format == "sse" and chat.stream.unknown_event == "ignore"
    poll = image.poll
    defaults = {f.name: field_default(f) for f in dataclasses.fields(m.PollSpec)}
    for name in ("method", "interval_s", "backoff", "deadline_s", "max_polls", "failed", "unknown", "message"):
        assert getattr(poll, name) == defaults[name], name
    fields = {f.name: field_default(f) for f in dataclasses.fields(m.ModelConfig)}
    for name in ("kind", "limits", "params", "fallbacks", "streaming", "on_unsupported_param"):
        assert getattr(model, name) == fields[name], name
    assert catalog.settings == m.RouterSettings()


def test_deployments_and_router_settings_take_the_dataclass_defaults(write_config):
    config = write_config({
        "models.d/m.yaml": "models:\n  x:\n    pricing: unknown\n    deployments: [{provider: openai}]\n",
        "router.yaml": "cooldown: {}\nbudgets:\n  - {scope: router, period: day, limit_usd: 1}\nstate: {}\n"})
    catalog, problems = load_catalog([catalog_dir(), config], {"OPENAI_API_KEY": "k"})
    assert [p for p in problems if p.severity == "error"] == []
    deployment = catalog.models["x"].deployments[0]
    assert deployment == m.Deployment(provider="openai", name="openai", upstream="x", pricing=None)
    assert (deployment.weight, deployment.limits, deployment.key_env) == (1, m.Limits(), None)
    settings = catalog.settings
    assert settings.cooldown == m.Cooldown() and settings.state == m.StateSettings() and settings.strategy == "ordered"
    assert settings.budgets == (m.Budget(scope="router", period="day", limit_usd=1),)
    assert settings.budgets[0].on_exceed == "raise"
    assert catalog.models["x"].strategy is None and catalog.models["x"].cooldown is None


@pytest.mark.parametrize("name", ["provider", "models", "router", "contract"])
def test_schema_is_valid_draft_2020_12(name):
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def objects(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object that has `properties`, anywhere in the schema."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "/if" not in where:  # an `if` is a condition, not an object
            yield where, node
        for key, value in node.items():
            yield from objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from objects(value, f"{where}/{i}")


def described(root: dict[str, Any], spec: dict[str, Any]) -> bool:
    if spec.get("description") or spec.get("title"):
        return True
    ref = spec.get("$ref")
    if ref:
        target = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return bool(target.get("description"))
    return False


@pytest.mark.parametrize("name", ["provider", "models", "router"])
def test_every_property_has_a_description_for_editor_completion(name):
    root = load(name)
    missing = [f"{where}/properties/{prop}" for where, obj in objects(root, "#") for prop, spec in obj["properties"].items()
               if not described(root, spec)]
    assert missing == []


@pytest.mark.parametrize("name", ["provider", "models", "router"])
def test_every_object_is_closed(name):
    root = load(name)
    open_objects = [where for where, obj in objects(root, "#") if obj.get("additionalProperties") is not False]
    assert open_objects == []


def test_bundled_schemas_are_the_checked_in_ones():
    for path in SCHEMAS.glob("*.schema.json"):
        assert (catalog_dir() / "schemas" / path.name).read_text() == path.read_text()
