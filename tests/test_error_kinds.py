"""One enumeration of error kinds (errors.ErrorKind): every public error has one, and the router,
cooldowns, `fallback_on` (schema, default) and the engine's error table all speak it."""

import inspect
import json

from conftest import ROOT

import llm_router
from llm_router import errors
from llm_router.config.model import RouterSettings
from llm_router.engine.errors import KIND_CLASSES, RETRYABLE_KINDS
from llm_router.errors import COOLDOWN_KINDS, DEFAULT_FALLBACK_ON, FALLBACK_KINDS, ErrorKind, RouterError


def schema(name: str) -> dict:
    return json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())


PUBLIC_ERRORS = [obj for obj in (getattr(llm_router, n) for n in llm_router.__all__)
                 if inspect.isclass(obj) and issubclass(obj, RouterError)]


def test_every_public_error_has_an_enumerated_kind():
    assert len(PUBLIC_ERRORS) >= 20
    for cls in PUBLIC_ERRORS:
        assert isinstance(cls.kind, ErrorKind), cls
    # and the ones that had none fall back to no class name any more
    assert {c.__name__: c.kind for c in PUBLIC_ERRORS if c.__name__ in (
        "RouterError", "ConfigurationError", "UnknownModelError", "UnsupportedParamError", "InvalidRequestError",
        "AllAttemptsFailed", "InvalidReplyError", "RouterClosedError", "StateUnavailableError")} == {
        "RouterError": "router_error", "ConfigurationError": "configuration", "UnknownModelError": "unknown_model",
        "UnsupportedParamError": "unsupported_param", "InvalidRequestError": "invalid_request",
        "AllAttemptsFailed": "all_attempts_failed", "InvalidReplyError": "invalid_reply", "RouterClosedError": "closed",
        "StateUnavailableError": "state_unavailable"}


def test_every_error_class_of_the_package_has_an_enumerated_kind():
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, RouterError):
            assert cls.kind in ErrorKind, cls


def test_router_schema_fallback_on_lists_exactly_the_kinds_that_may_move_on():
    fallback_on = schema("router")["properties"]["fallback_on"]
    assert set(fallback_on["items"]["enum"]) == FALLBACK_KINDS
    assert set(fallback_on["default"]) == DEFAULT_FALLBACK_ON == RouterSettings().fallback_on
    assert DEFAULT_FALLBACK_ON <= FALLBACK_KINDS and COOLDOWN_KINDS <= FALLBACK_KINDS


def test_the_schema_names_every_kind_that_counts_towards_a_cooldown():
    description = schema("router")["properties"]["cooldown"]["description"]
    listed = description.split("(only ", 1)[1].split(" errors count)", 1)[0].replace(" and ", ", ").split(", ")
    assert set(listed) == COOLDOWN_KINDS


def test_the_engine_error_table_uses_only_enumerated_kinds():
    assert set(KIND_CLASSES) <= set(ErrorKind)
    for kind, cls in KIND_CLASSES.items():
        assert cls.kind == kind, (kind, cls)
    assert set(ErrorKind) >= RETRYABLE_KINDS
    assert set(schema("provider")["$defs"]["error_kind"]["enum"]) == set(KIND_CLASSES)


def test_a_kind_is_its_string_in_comparisons_sets_and_json():
    assert ErrorKind.TIMEOUT == "timeout" and "timeout" in COOLDOWN_KINDS
    assert json.dumps({"kind": llm_router.ProviderTimeout.kind}) == '{"kind": "timeout"}'
    assert f"{ErrorKind.INVALID_REPLY}" == "invalid_reply"
