"""Request templates: whole-expression leaves keep their type, mixed strings render to text,
undefined/None drops keys (and the objects they empty), user data is never a template, and the
sandbox refuses what config should not do."""

from __future__ import annotations

import jinja2
import pytest

from llm_router.templating import (
    DROP,
    TemplateCompileError,
    TemplateRenderError,
    compile_structure,
    rename_keys,
    rename_roles,
    system_text,
    without_system,
)

ALL = frozenset({"model", "messages", "prompt", "params"})


def render(structure, **ctx):
    ctx = {"model": {"name": "m", "upstream": "up-1"}, "messages": [], "prompt": None, "params": {}} | ctx
    return compile_structure(structure, ALL).render(ctx)


@pytest.mark.parametrize(
    ("param", "expected"),
    [("478", "478"), (478, 478), (0.5, 0.5), (True, True), ([1, "2"], [1, "2"]), ({"a": [1]}, {"a": [1]}), ("", "")],
)
def test_whole_expression_leaf_keeps_the_value_and_its_type(param, expected):
    out = render({"x": "{{ params.x }}"}, params={"x": param})
    assert out == {"x": expected}
    assert type(out["x"]) is type(expected)


def test_whole_expression_leaf_returns_the_list_itself_not_its_text():
    messages = [{"role": "user", "content": "hi"}]
    assert render({"messages": "{{ messages }}"}, messages=messages) == {"messages": messages}


def test_mixed_text_and_expression_renders_to_a_string():
    assert render({"path": "/models/{{ model.upstream }}:go", "n": "n={{ params.n }}"}, params={"n": 3}) == {
        "path": "/models/up-1:go",
        "n": "n=3",
    }


def test_undefined_and_none_drop_their_key():
    out = render({"a": "{{ params.missing }}", "b": "{{ params.none }}", "c": "{{ params.zero }}"},
                 params={"none": None, "zero": 0})
    assert out == {"c": 0}


def test_a_dict_emptied_by_dropped_keys_is_dropped():
    structure = {"model": "{{ model.upstream }}",
                 "generationConfig": {"temperature": "{{ params.t }}", "thinking": {"budget": "{{ params.b }}"}}}
    assert render(structure) == {"model": "up-1"}
    assert render(structure, params={"b": 5}) == {"model": "up-1", "generationConfig": {"thinking": {"budget": 5}}}


def test_a_list_emptied_by_dropped_items_is_dropped():
    structure = {"parts": [{"text": "{{ params.s }}"}], "keep": "{{ model.upstream }}"}
    assert render(structure) == {"keep": "up-1"}
    assert render(structure, params={"s": "sys"}) == {"parts": [{"text": "sys"}], "keep": "up-1"}


def test_a_structure_that_drops_everything_renders_to_drop():
    assert render({"a": "{{ params.nope }}"}) is DROP


def test_literal_empty_values_written_in_config_are_kept():
    assert render({"a": {}, "b": [], "c": "plain", "d": 0}) == {"a": {}, "b": [], "c": "plain", "d": 0}


def test_user_content_that_looks_like_a_template_is_sent_literally():
    messages = [{"role": "user", "content": "what is {{ 7*7 }} and {% if 1 %}x{% endif %}"}]
    out = render({"messages": "{{ messages }}", "prompt": "{{ prompt }}", "mixed": "p: {{ prompt }}"},
                 messages=messages, prompt="{{ 7*7 }}")
    assert out["messages"][0]["content"] == "what is {{ 7*7 }} and {% if 1 %}x{% endif %}"
    assert out["prompt"] == "{{ 7*7 }}"
    assert out["mixed"] == "p: {{ 7*7 }}"


@pytest.mark.parametrize("expr", ["{{ 'a' * 10**8 }}", "{{ [0] * 10**8 }}", "{{ 10**8 * 'a' }}", "{{ 2 ** 100000 }}"])
def test_an_expression_that_builds_a_huge_value_is_refused(expr):
    compiled = compile_structure({"x": expr}, ALL)
    with pytest.raises(TemplateRenderError, match="SecurityError"):
        compiled.render({"model": {}, "messages": [], "prompt": None, "params": {}})


def test_small_repetition_is_allowed():
    assert render({"x": "{{ 'ab' * 3 }}", "y": "{{ 2 ** 10 }}"}) == {"x": "ababab", "y": 1024}


def test_unknown_variable_is_rejected_at_compile_time_naming_the_key():
    with pytest.raises(TemplateCompileError, match=r"body\.x: unknown variable\(s\) submit"):
        compile_structure({"x": "{{ submit.id }}"}, ALL, "body")


def test_poll_templates_may_use_submit():
    compiled = compile_structure("/jobs/{{ submit.job.ref }}", ALL | {"submit"})
    assert compiled.render({"submit": {"job": {"ref": "j1"}}}) == "/jobs/j1"


def test_syntax_error_is_a_compile_error():
    with pytest.raises(TemplateCompileError, match="syntax"):
        compile_structure({"x": "{{ params.a + }}"}, ALL)


def test_private_attributes_are_refused_at_compile_time():
    with pytest.raises(TemplateCompileError, match="private"):
        compile_structure({"x": "{{ params.__class__ }}"}, ALL)


def test_param_names_used_in_the_body_are_recorded():
    compiled = compile_structure({"a": "{{ params.max_tokens | default(1) }}", "b": "{{ params['top_p'] }}"}, ALL)
    assert compiled.param_names == {"max_tokens", "top_p"}


MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
]


def test_system_text_joins_system_and_developer_messages():
    assert system_text(MESSAGES) == "be brief\n\nand kind"
    assert system_text(MESSAGES[2:]) is None


def test_system_text_none_drops_the_key_in_a_template():
    structure = {"system": "{{ messages | system_text }}", "messages": "{{ messages | without_system }}"}
    assert render(structure, messages=MESSAGES[2:]) == {"messages": MESSAGES[2:]}


def test_without_system_keeps_the_conversation_in_order():
    assert without_system(MESSAGES) == MESSAGES[2:]


def test_rename_roles_and_rename_keys():
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert rename_roles(messages, {"assistant": "model"}) == [{"role": "user", "content": "a"}, {"role": "model", "content": "b"}]
    assert rename_keys(messages, {"content": "parts"}) == [{"role": "user", "parts": "a"}, {"role": "assistant", "parts": "b"}]


def test_from_json_parses_text_and_reports_bad_json():
    assert render({"args": "{{ params.a | from_json }}"}, params={"a": '{"x": [1, 2]}'}) == {"args": {"x": [1, 2]}}
    assert render({"args": "{{ params.a | from_json }}"}, params={"a": {"already": "data"}}) == {"args": {"already": "data"}}
    with pytest.raises(TemplateRenderError, match="not valid JSON"):
        render({"args": "{{ params.a | from_json }}"}, params={"a": "{oops"})


@pytest.mark.parametrize(
    "expr",
    [
        "{{ 'a'.ljust(10**8) }}",
        "{{ 'a'.zfill(10**8) }}",
        "{{ 'a' | center(10**8) }}",
        "{{ '{:>99999999}'.format(1) }}",
        "{{ '%99999999d' % 1 }}",
        "{{ '%*d' % (10**8, 1) }}",
        "{{ '%99999999d' | format(1) }}",
        "{{ params | tojson(indent=10**8) }}",
        "{{ (['x' * 99999] * 1000) | join }}",
        "{{ 'ab' | replace('', 'x' * 50000) }}",
    ],
)
def test_padding_formatting_and_joining_cannot_build_huge_values(expr):
    compiled = compile_structure({"x": expr}, ALL)
    with pytest.raises(TemplateRenderError, match="SecurityError"):
        compiled.render({"model": {}, "messages": [], "prompt": None, "params": {}})


def test_the_size_caps_do_not_refuse_large_numbers_in_user_data():
    params = {"seed": 123456789, "text": "a-b"}
    out = render({
        "a": "{{ '%s' % params.seed }}", "b": "{{ '%d' | format(params.seed) }}", "c": "{{ params.seed | tojson }}",
        "d": "{{ '{}'.format(params.seed) }}", "e": "{{ [params.text, 'c'] | join(',') }}",
        "f": "{{ params.text | replace('-', '+') }}", "g": "{{ params.get('missing', 987654321) }}",
    }, params=params)
    assert out == {"a": "123456789", "b": "123456789", "c": "123456789", "d": "123456789", "e": "a-b,c",
                   "f": "a+b", "g": 987654321}


@pytest.mark.parametrize(
    "expr",
    ["messages", "model.upstream", "params.x", "params['x']", "params.x.y", "params.items", "params.get",
     "prompt", "prompt.upper", "params.nested.deep", "params.nested['deep']", "params.none.y", "params.text.y"],
)
def test_plain_lookups_give_what_jinja_gives(expr):
    from types import MappingProxyType

    from llm_router.templating import ENV

    ctx = {"model": MappingProxyType({"upstream": "up"}), "messages": [{"role": "user", "content": "x"}],
           "prompt": "p", "params": {"x": {"y": [1]}, "items": 3, "nested": {"deep": 0}, "none": None, "text": "t"}}
    fast = compile_structure({"v": "{{ " + expr + " }}"}, ALL).render(ctx)
    slow = ENV.compile_expression(expr, undefined_to_none=False)(ctx)
    expected = DROP if slow is None or isinstance(slow, jinja2.Undefined) else {"v": slow}
    assert fast == expected


@pytest.mark.parametrize("source", ["{{ params.w | nofilter }}", "x {{ params.w | nofilter }}", "{{ params.w is notatest }}"])
def test_an_unknown_filter_or_test_is_a_compile_error_naming_it(source):
    with pytest.raises(TemplateCompileError, match=r"body\.w: unknown filter or test (nofilter|notatest)"):
        compile_structure({"w": source}, ALL, "body")
