"""Dataclasses that cost less to define: `record` and `frozen`.

`dataclasses.dataclass` writes the source of up to six methods for each class and compiles each
one (`exec`); for the ~60 classes of config/model.py and types.py that was most of the time
`import llm_router` spent in our own code. These decorators still make real dataclasses
(`dataclasses.fields`, `replace`, `asdict` and mypy see no difference), but `__repr__`, `__eq__`
and `__hash__` are shared functions that read the class's fields, written once here:

- `record`: a generated `__init__`, the one dataclass would write, for what the hot path builds on
  every call (responses, usage, attempts); written (one `exec`) when the class is first
  instantiated, so that the classes a process never builds cost nothing;
- `frozen`: no generated code at all: one `__init__` shared by every class, which takes the
  fields positionally or by keyword as dataclass's would. For the config, built once per catalog.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")

_MISSING = dataclasses.MISSING
# per class: its fields' names for __init__/__eq__/__hash__ and pickling, and those __repr__ shows
_FIELDS: dict[type, tuple[str, ...]] = {}
_SHOWN: dict[type, tuple[str, ...]] = {}
_SPECS: dict[type, tuple[tuple[str, Any, Any], ...]] = {}  # frozen: (name, default, default_factory)


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = _FIELDS[cls] = tuple(f.name for f in fields)
        _SHOWN[cls] = tuple(f.name for f in fields if f.repr)
    return names


def _repr(self: Any) -> str:
    cls = type(self)
    _fields(cls)
    return f"{cls.__qualname__}({', '.join(f'{name}={getattr(self, name)!r}' for name in _SHOWN[cls])})"


def _eq(self: Any, other: Any) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented  # type: ignore[no-any-return]  # typeshed's NotImplemented is Any
    names = _fields(type(self))  # compared as tuples, as dataclass's __eq__ does (identity first, then ==)
    return tuple(getattr(self, name) for name in names) == tuple(getattr(other, name) for name in names)


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, name) for name in _fields(type(self))))


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    spec = _SPECS[cls]
    if len(args) > len(spec):
        raise TypeError(f"{cls.__name__}() takes {len(spec)} positional arguments but {len(args)} were given")
    used = 0
    for i, (name, default, factory) in enumerate(spec):
        if i < len(args):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            value = args[i]
        elif name in kwargs:
            value = kwargs[name]
            used += 1
        elif default is not _MISSING:
            value = default
        elif factory is not _MISSING:
            value = factory()
        else:
            raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
        object.__setattr__(self, name, value)
    if used != len(kwargs):
        unknown = sorted(set(kwargs) - {name for name, _, _ in spec})
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {unknown[0]!r}")


def _refuse_set(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_delete(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, name) for name in _fields(type(self))]


def _setstate(self: Any, state: list[Any]) -> None:
    for name, value in zip(_fields(type(self)), state, strict=True):
        object.__setattr__(self, name, value)


_FACTORY: Any = object()  # an __init__ parameter's default that stands for "call the field's default_factory"


def _lazy_init(cls: type) -> Callable[..., None]:
    """An __init__ that writes the class's own on its first call (`_write_init`) and puts it in its place."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init = _write_init(cls)
        cls.__init__ = init  # type: ignore[misc]
        init(self, *args, **kwargs)

    return __init__


def _write_init(cls: type) -> Callable[..., None]:
    """What dataclass writes: the fields as parameters (keyword-only ones last), defaults, factories
    called when not given, and one assignment per field. A frozen class refuses assignment, so its
    fields are set through their slots' own setters (`object.__setattr__`, as dataclass does it,
    costs 1.7x as much)."""
    frozen = cls.__setattr__ is _refuse_set  # type: ignore[comparison-overlap]
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    params: list[str] = []
    lines: list[str] = []
    fields = dataclasses.fields(cls)
    for f in [*(f for f in fields if not f.kw_only), *(f for f in fields if f.kw_only)]:
        if f.kw_only and "*" not in params:
            params.append("*")
        value = f.name
        if f.default is not _MISSING:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not _MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            value = f"_factory_{f.name}() if {f.name} is _FACTORY else {f.name}"
        else:
            params.append(f.name)
        if frozen:
            namespace[f"_set_{f.name}"] = inspect.getattr_static(cls, f.name).__set__  # the slot's member descriptor
            lines.append(f"    _set_{f.name}(self, {value})")
        else:
            lines.append(f"    self.{f.name} = {value}")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines or ["    pass"]), namespace)
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _check_order(cls: type) -> None:
    """What dataclass refuses when it writes __init__ (here written later): a field without a default
    after one with a default, among the positional ones."""
    defaulted = None
    for f in dataclasses.fields(cls):
        if f.kw_only:
            continue
        if f.default is not _MISSING or f.default_factory is not _MISSING:
            defaulted = f.name
        elif defaulted is not None:
            raise TypeError(f"non-default argument {f.name!r} follows default argument {defaulted!r} in {cls.__name__}")


def _describe(cls: type) -> None:
    """The docstring dataclass would write (`Name(field, ...)`), without its inspect.signature call."""
    if not cls.__doc__:
        names = [name for name in inspect.get_annotations(cls) if not name.startswith("__")]
        cls.__doc__ = f"{cls.__name__}({', '.join(names)})"


@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, frozen: bool = False, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(eq_default=True)
def record(cls: type[T] | None = None, /, *, frozen: bool = False,
           kw_only: bool = False) -> type[T] | Callable[[type[T]], type[T]]:
    """A slotted dataclass (frozen or not) with a generated `__init__`, written on first use; repr, == and
    hash (a frozen one's) shared, as is a frozen one's refusal to be changed."""

    def wrap(cls: type[T]) -> type[T]:
        _describe(cls)
        made = dataclasses.dataclass(cls, slots=True, init=False, kw_only=kw_only, repr=False, eq=False)
        _check_order(made)
        methods: list[tuple[str, Any]] = [("__init__", _lazy_init(made)), ("__repr__", _repr), ("__eq__", _eq),
                                           ("__hash__", _hash if frozen else None)]
        if frozen:
            methods += [("__setattr__", _refuse_set), ("__delattr__", _refuse_delete), ("__getstate__", _getstate),
                        ("__setstate__", _setstate)]
        for name, method in methods:
            setattr(made, name, method)
        return made

    return wrap if cls is None else wrap(cls)


@dataclass_transform(eq_default=True, frozen_default=True)
def frozen(cls: type[T], /) -> type[T]:
    """A frozen, slotted dataclass that generates no code: every method is shared."""
    _describe(cls)
    made = dataclasses.dataclass(cls, slots=True, init=False, repr=False, eq=False)
    _SPECS[made] = tuple((f.name, f.default, f.default_factory) for f in dataclasses.fields(made))  # type: ignore[arg-type]
    for name, method in (("__init__", _init), ("__repr__", _repr), ("__eq__", _eq), ("__hash__", _hash),
                         ("__setattr__", _refuse_set), ("__delattr__", _refuse_delete),
                         ("__getstate__", _getstate), ("__setstate__", _setstate)):
        setattr(made, name, method)
    return made
