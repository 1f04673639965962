"""_records: `record` and `frozen` classes behave as the dataclasses they replace (construction, defaults,
factories, keyword-only fields, ==, hash, repr, replace, pickling, frozenness), only cheaper to define."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import field
from typing import Any

import pytest

from llm_router._records import frozen, record
from llm_router.types import Attempt, EmbeddingResponse, LLMResponse, Usage


@record
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default="", repr=False)


@record(frozen=True)
class FrozenPoint:
    x: int
    y: int = 0


@record(frozen=True)
class FrozenTagged:  # set through its slots' setters (_records._write_init)
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)


@record(frozen=True, kw_only=True)
class FrozenBase:
    a: int
    b: int = 2


@record(frozen=True, kw_only=True)
class FrozenChild(FrozenBase):
    c: int


@frozen
class Config:
    name: str
    size: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@record(kw_only=True)
class Base:
    a: int
    b: int = 2


@record(kw_only=True)
class Child(Base):
    c: int


@dataclasses.dataclass(slots=True)
class PlainPoint:  # the dataclass Point stands for
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    note: str = field(default="", repr=False)


@pytest.mark.parametrize("cls", [Point, FrozenTagged, Config])
def test_construction_takes_positional_and_keyword_fields_with_defaults_and_factories(cls):
    first, by_keyword = cls(1 if cls is not Config else "n"), cls(**{dataclasses.fields(cls)[0].name: 1 if cls is not Config else "n"})
    assert first == by_keyword
    third = dataclasses.fields(cls)[2].name
    assert getattr(first, third) == getattr(by_keyword, third)
    if cls is not FrozenTagged:  # () is one object
        assert getattr(first, third) is not getattr(by_keyword, third)
    given = cls(7, 8, ("t",)) if cls is FrozenTagged else None
    assert given is None or (given.x, given.y, given.tags) == (7, 8, ("t",))
    with pytest.raises(TypeError):
        cls()
    with pytest.raises(TypeError):
        cls(1, 2, 3, 4, 5)
    with pytest.raises(TypeError):
        cls(1, bogus=2)
    with pytest.raises(TypeError):
        cls(1, **{dataclasses.fields(cls)[0].name: 1})


def test_a_record_is_what_the_dataclass_is():
    ours, theirs = Point(1, 2, ["a"], "n"), PlainPoint(1, 2, ["a"], "n")
    assert repr(ours) == repr(theirs).replace("PlainPoint", "Point")
    assert ours == Point(1, 2, ["a"], "n") and ours != Point(1, 2, ["a"], "x") and ours != Point(2)
    assert Point.__hash__ is None and [f.name for f in dataclasses.fields(ours)] == ["x", "y", "tags", "note"]
    ours.y = 5
    assert dataclasses.replace(ours, x=9) == Point(9, 5, ["a"], "n") and dataclasses.asdict(ours)["y"] == 5
    assert pickle.loads(pickle.dumps(ours)) == ours
    assert not hasattr(ours, "__dict__")


@pytest.mark.parametrize("value", [FrozenPoint(1, 2), Config("n", 2, {"k": 1})])
def test_frozen_ones_refuse_changes_and_hash_by_value(value):
    first = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(value, first)
    assert pickle.loads(pickle.dumps(value)) == value and dataclasses.replace(value) == value
    if isinstance(value, FrozenPoint):
        assert hash(value) == hash(FrozenPoint(1, 2)) and {value, FrozenPoint(1, 2)} == {value}


@pytest.mark.parametrize(("base", "child"), [(Base, Child), (FrozenBase, FrozenChild)])
def test_keyword_only_fields_and_inheritance(base, child):
    made = child(a=1, c=3)
    assert (made.a, made.b, made.c) == (1, 2, 3) and made != base(a=1)
    with pytest.raises(TypeError):
        child(1, 2, 3)


def test_a_field_without_default_after_one_with_is_refused_as_dataclass_does():
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument 'a'"):
        @record
        class Bad:
            a: int = 1
            b: int


def test_nan_compares_as_dataclass_compares_it():
    nan = float("nan")
    assert FrozenPoint(nan) == FrozenPoint(nan) and Config("n", nan) == Config("n", nan)  # type: ignore[arg-type]


def test_the_response_types_build_as_before():
    usage = Usage(input_tokens=3, output_tokens=2)
    response = LLMResponse("hi", "m", "p", usage, 0.1, 0.2, attempts=[Attempt("m", "p", True)])
    assert response.usage.total_tokens == 5 and response.tool_calls == [] and response.extra == {}
    assert EmbeddingResponse(model_name="m", provider="p", usage=usage, cost=None, latency=0.0, vectors=[[1.0]]).dimensions == 1
    with pytest.raises(TypeError):
        EmbeddingResponse("m", "p", usage, None, 0.0, vectors=[])  # keyword-only, as before
