"""Every kind of bad config is reported with its file, its line and a message that says how to fix it.

Each case is a small config dir; the line a problem must point at carries the marker `#!`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_router.config import load_catalog
from llm_router.errors import Problem

PROVIDER = """\
name: acme
base_url: https://api.acme.test/v1
auth: {header: Authorization, scheme: Bearer, env: ACME_API_KEY}
hosts: [api.acme.test]
operations:
  chat:
    path: /chat
    body:
      model: "{{ model.upstream }}"
      messages: "{{ messages }}"
    params: merge
    response:
      content: $.choices[0].message.content
"""

MODEL = """\
models:
  m1:
    provider: acme
    pricing: {input_per_million: 1, output_per_million: 2}
    params: [temperature]
"""

POLL_PROVIDER = """\
name: acme
base_url: https://api.acme.test/v1
auth: {header: x-key, env: ACME_API_KEY}
operations:
  image:
    path: /flux
    body: {prompt: "{{ prompt }}"}
    poll:
      url: {from: $.polling_url}
      status: $.status
      pending: [Pending]
      done: [Ready, Pending]  #!
      result: {content: $.result.sample, content_kind: url}
"""

IMAGE_MODEL = """\
models:
  flux:
    provider: acme
    kind: image
    pricing: {per_image: 0.04}
"""


def with_marked_line(text: str, old: str, new: str) -> str:
    """Replace `old` (one line of the text) by `new` and mark that line."""
    assert old in text, old
    return text.replace(old, new + "  #!", 1)


# (case id, files, expected substring of the message); the marked line is where it must point.
CASES = [
    ("yaml-syntax-error", {"providers.d/acme.yaml": PROVIDER.replace("hosts: [api.acme.test]", "hosts: [api.acme.test\nfoo: 1  #!"),
                           "models.d/m.yaml": MODEL},
     "YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence that starts on line 4)"),
    ("wrong-type", {"providers.d/acme.yaml": PROVIDER + "max_connections: many  #!\n", "models.d/m.yaml": MODEL},
     "max_connections: 'many' is not of type 'integer'"),
    ("wrong-type-in-model", {"providers.d/acme.yaml": PROVIDER,
                             "models.d/m.yaml": with_marked_line(MODEL, "    params: [temperature]", "    params: temperature")},
     "'temperature' is not of type 'array'"),
    ("unknown-key-did-you-mean", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL + "    fallback: [m1]  #!\n"},
     "unknown key 'fallback' — did you mean 'fallbacks'?"),
    ("unknown-provider-key-did-you-mean", {"providers.d/acme.yaml": PROVIDER + "timeout: {read_s: 5}  #!\n", "models.d/m.yaml": MODEL},
     "unknown key 'timeout' — did you mean 'timeouts'?"),
    ("missing-provider-did-you-mean", {"providers.d/acme.yaml": PROVIDER,
                                       "models.d/m.yaml": with_marked_line(MODEL, "    provider: acme", "    provider: acmee")},
     "names provider 'acmee', which does not exist; did you mean 'acme'?"),
    ("missing-provider-known-list", {"providers.d/acme.yaml": PROVIDER,
                                     "models.d/m.yaml": with_marked_line(MODEL, "    provider: acme", "    provider: zzz")},
     "known providers: acme"),
    ("provider-lacks-operation", {"providers.d/acme.yaml": PROVIDER,
                                  "models.d/m.yaml": MODEL + "    kind: image  #!\n"},
     "is a image model but provider 'acme' has no `image` operation (it has: chat)"),
    ("fallback-to-unknown-model", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL + "    fallbacks: [m2]  #!\n"},
     "falls back to unknown model 'm2'"),
    ("duplicate-key-in-mapping", {"providers.d/acme.yaml": PROVIDER + "name: other  #!\n", "models.d/m.yaml": MODEL},
     "duplicate key 'name' (first defined on line 1)"),
    ("template-syntax-error", {"providers.d/acme.yaml": with_marked_line(PROVIDER, '      model: "{{ model.upstream }}"',
                                                                         '      model: "{{ model.upstream }"'),
                               "models.d/m.yaml": MODEL}, "template syntax error"),
    ("template-unknown-variable", {"providers.d/acme.yaml": with_marked_line(PROVIDER, '      model: "{{ model.upstream }}"',
                                                                             '      model: "{{ modle.upstream }}"'),
                                   "models.d/m.yaml": MODEL}, "unknown variable(s) modle"),
    ("template-private-attribute", {"providers.d/acme.yaml": with_marked_line(PROVIDER, '      model: "{{ model.upstream }}"',
                                                                              '      model: "{{ model.__class__ }}"'),
                                    "models.d/m.yaml": MODEL}, "refuses private attribute(s) __class__"),
    ("template-unknown-filter", {"providers.d/acme.yaml": with_marked_line(PROVIDER, '      messages: "{{ messages }}"',
                                                                           '      messages: "{{ messages | nosuch }}"'),
                                 "models.d/m.yaml": MODEL}, "unknown filter or test nosuch"),
    ("template-in-a-list-leaf", {"providers.d/acme.yaml": PROVIDER.replace('      messages: "{{ messages }}"',
                                                                           '      messages:\n        - "{{ messages }}"\n        - "{{ oops }}"  #!'),
                                 "models.d/m.yaml": MODEL}, "unknown variable(s) oops"),
    ("broken-jsonpath", {"providers.d/acme.yaml": with_marked_line(PROVIDER, "      content: $.choices[0].message.content",
                                                                   "      content: $.choices[0.message"),
                         "models.d/m.yaml": MODEL}, "operations.chat.response.content"),
    ("jsonpath-without-dollar", {"providers.d/acme.yaml": with_marked_line(PROVIDER, "      content: $.choices[0].message.content",
                                                                           "      content: choices.0.message"),
                                 "models.d/m.yaml": MODEL}, "is not a JSONPath; JSONPaths start with '$'"),
    ("poll-status-in-two-lists", {"providers.d/acme.yaml": POLL_PROVIDER, "models.d/m.yaml": IMAGE_MODEL},
     "poll status 'Pending' is in both `pending` and `done`"),
    ("stream-handler-and-route-by", {"providers.d/acme.yaml": PROVIDER + (
        "    stream:  #!\n      body: {stream: true}\n      route_by: event\n      on: {delta: {delta: $.d}}\n      handler: {delta: $.d}\n"),
        "models.d/m.yaml": MODEL}, "`handler` cannot be used with `route_by`/`on`"),
    ("stream-on-without-route-by", {"providers.d/acme.yaml": PROVIDER + (
        "    stream:  #!\n      body: {stream: true}\n      on: {delta: {delta: $.d}}\n      handler: {delta: $.d}\n"),
        "models.d/m.yaml": MODEL}, "`on` cannot be used without `route_by`"),
    ("operation-poll-and-response", {"providers.d/acme.yaml": POLL_PROVIDER.replace("done: [Ready, Pending]  #!", "done: [Ready]")
                                     .replace("    poll:", "    response: {content: $.x}\n    poll:").replace("  image:", "  image:  #!"),
                                     "models.d/m.yaml": IMAGE_MODEL}, "operations.image: `response` cannot be used with `poll`"),
    ("auth-header-and-query", {"providers.d/acme.yaml": with_marked_line(
        PROVIDER, "auth: {header: Authorization, scheme: Bearer, env: ACME_API_KEY}", "auth: {header: x-key, query: key, env: ACME_API_KEY}"),
        "models.d/m.yaml": MODEL}, "auth: `header` cannot be used with `query`"),
    ("defaults-not-in-params", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL + "    defaults:\n      top_p: 0.5  #!\n"},
     "`defaults` names 'top_p', which is not in its `params` allow-list"),
    ("rename-not-in-params", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL + "    rename:\n      max_tokens: n  #!\n"},
     "`rename` names 'max_tokens', which is not in its `params` allow-list"),
    ("param-never-sent", {"providers.d/acme.yaml": PROVIDER.replace("    params: merge\n", "    params: none\n"),
                          "models.d/m.yaml": with_marked_line(MODEL, "    params: [temperature]", "    params: [temperature]")},
     "allows param 'temperature' but provider 'acme' never sends it"),
    ("missing-pricing", {"providers.d/acme.yaml": PROVIDER,
                         "models.d/m.yaml": MODEL.replace("    pricing: {input_per_million: 1, output_per_million: 2}\n", "")
                         .replace("  m1:", "  m1:  #!")}, "'pricing' is a required property"),
    ("chat-pricing-incomplete", {"providers.d/acme.yaml": PROVIDER,
                                 "models.d/m.yaml": with_marked_line(MODEL, "    pricing: {input_per_million: 1, output_per_million: 2}",
                                                                     "    pricing: {input_per_million: 1}")},
     "a chat model's pricing needs input_per_million and output_per_million"),
    ("image-model-without-per-image", {"providers.d/acme.yaml": POLL_PROVIDER.replace("done: [Ready, Pending]  #!", "done: [Ready]"),
                                       "models.d/m.yaml": with_marked_line(IMAGE_MODEL, "    pricing: {per_image: 0.04}",
                                                                           "    pricing: {input_per_million: 1}")},
     "an image model's pricing needs per_image, per_image_by_size or per_image_by_quality"),
    ("extends-unknown-provider", {"providers.d/acme.yaml": "extends: openai-compat  #!\nname: acme\nbase_url: https://a.test\n",
                                  "providers.d/base.yaml": PROVIDER.replace("name: acme", "name: openai-compatible"),
                                  "models.d/m.yaml": MODEL}, "extends unknown provider 'openai-compat'; did you mean 'openai-compatible'?"),
    ("extends-cycle", {"providers.d/acme.yaml": "extends: mid  #!\nname: acme\n",
                       "providers.d/mid.yaml": "extends: acme\nname: mid\n",
                       "models.d/m.yaml": MODEL}, "`extends` cycle: acme → mid → acme"),
    ("as-written-error-in-extends-file", {"providers.d/acme.yaml": "extends: base\nname: acme\ntimeouts:\n  read_s: slow  #!\n",
                                          "providers.d/base.yaml": PROVIDER.replace("name: acme", "name: base"),
                                          "models.d/m.yaml": MODEL}, "timeouts.read_s: 'slow' is not of type 'number'"),
    ("merged-error-in-extends-file", {"providers.d/acme.yaml": "extends: base\nname: acme\noperations:\n  chat:\n"
                                      "    response: null\n    poll: {url: {from: $.u}}  #!\n",
                                      "providers.d/base.yaml": PROVIDER.replace("name: acme", "name: base"),
                                      "models.d/m.yaml": MODEL}, "'status' is a required property"),
]


def marked(config: Path) -> list[tuple[str, int]]:
    return [(str(path), n) for path in sorted(config.rglob("*.yaml"))
            for n, line in enumerate(path.read_text().splitlines(), 1) if "#!" in line]


def errors_of(config: Path) -> list[Problem]:
    _, problems = load_catalog([config], {})
    return [p for p in problems if p.severity == "error"]


@pytest.mark.parametrize("files,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_reported_with_file_line_and_fix(write_config, files, expected):
    config = write_config(files)
    (where,) = marked(config)
    errors = errors_of(config)
    matching = [p for p in errors if expected in p.message]
    assert matching, f"no error says {expected!r}; got:\n" + "\n".join(map(str, errors))
    assert (matching[0].file, matching[0].line) == where, "\n".join(map(str, errors))
    # The same fault is never reported twice.
    assert len({(p.file, p.line, p.message) for p in errors}) == len(errors)


def test_fallback_cycle_is_reported_once_with_its_path(write_config):
    config = write_config({"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": (
        "models:\n"
        "  a:\n    provider: acme\n    pricing: unknown\n    fallbacks: [b]\n"
        "  b:\n    provider: acme\n    pricing: unknown\n    fallbacks: [a]\n")})
    errors = errors_of(config)
    cycles = [p for p in errors if "fallback cycle" in p.message]
    assert len(cycles) == 1, errors
    assert "a → b → a" in cycles[0].message or "b → a → b" in cycles[0].message
    assert cycles[0].file == str(config / "models.d/m.yaml") and cycles[0].line in (5, 9)


def test_duplicate_model_across_two_files_names_both_locations(write_config):
    config = write_config({"providers.d/acme.yaml": PROVIDER, "models.d/a.yaml": MODEL, "models.d/b.yaml": "\n" + MODEL})
    (error,) = errors_of(config)
    assert error.file == str(config / "models.d/b.yaml") and error.line == 3
    assert "duplicate model 'm1'" in error.message
    assert f"{config / 'models.d/a.yaml'}:2" in error.message


def test_duplicate_provider_across_two_files_names_both_locations(write_config):
    config = write_config({"providers.d/a.yaml": PROVIDER, "providers.d/b.yaml": PROVIDER, "models.d/m.yaml": MODEL})
    (error,) = errors_of(config)
    assert (error.file, error.line) == (str(config / "providers.d/b.yaml"), 1)
    assert f"also defined at {config / 'providers.d/a.yaml'}:1" in error.message


def test_every_problem_is_reported_in_one_run(write_config):
    config = write_config({
        "providers.d/acme.yaml": PROVIDER + "timeout: {read_s: 5}\n",
        "models.d/m.yaml": MODEL + "    fallback: [m1]\n",
        "models.d/n.yaml": "models:\n  n1:\n    provider: acme\n    kind: chat\n    pricing: {input_per_million: -1, output_per_million: 1}\n",
    })
    errors = errors_of(config)
    assert len(errors) == 3, "\n".join(map(str, errors))
    assert {(Path(p.file).name, p.line) for p in errors} == {("acme.yaml", 14), ("m.yaml", 6), ("n.yaml", 5)}


def test_syntax_schema_and_reference_errors_are_all_reported_in_one_run(write_config):
    config = write_config({
        "providers.d/acme.yaml": PROVIDER,
        "providers.d/broken.yaml": "name: broken\nbase_url: [x\n",
        "models.d/m.yaml": MODEL + "    fallbacks: [nope]\n",
        "models.d/n.yaml": "models:\n  n1:\n    provider: acme\n    kind: chatt\n    pricing: unknown\n",
    })
    errors = errors_of(config)
    assert [(Path(p.file).name, p.line) for p in errors] == [("broken.yaml", 3), ("n.yaml", 4), ("m.yaml", 6)], errors
    assert "did you mean 'chat'?" in errors[1].message and "unknown model 'nope'" in errors[2].message


def test_a_broken_provider_brings_no_follow_on_errors_for_its_models(write_config):
    config = write_config({"providers.d/acme.yaml": PROVIDER.replace("$.choices[0].message.content", "$.choices[0"),
                           "models.d/m.yaml": MODEL})
    (error,) = errors_of(config)
    assert (Path(error.file).name, error.line, error.key) == ("acme.yaml", 13, "operations.chat.response.content")


def test_semantic_problems_in_independent_models_are_all_reported(write_config):
    config = write_config({"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": (
        "models:\n"
        "  a:\n    provider: acmee\n    pricing: unknown\n"
        "  b:\n    provider: acme\n    pricing: unknown\n    fallbacks: [zz]\n"
        "  c:\n    provider: acme\n    pricing: unknown\n    defaults: {top_p: 1}\n")})
    errors = errors_of(config)
    assert [(p.line, p.key) for p in errors] == [(3, "provider"), (8, "fallbacks"), (12, "defaults.top_p")]


def test_control_character_is_reported_at_its_line(write_config):
    config = write_config({"providers.d/acme.yaml": PROVIDER + "description: \x00\n", "models.d/m.yaml": MODEL})
    (error,) = errors_of(config)
    assert (error.file, error.line) == (str(config / "providers.d/acme.yaml"), 14)
    assert "control characters" in error.message


@pytest.mark.parametrize("extends", ["0", "[a, b]", "{x: 1}"])
def test_extends_of_wrong_type_is_a_schema_error_not_a_crash(write_config, extends):
    config = write_config({"providers.d/acme.yaml": f"extends: {extends}\nname: acme\n", "models.d/m.yaml": "models: {}\n"})
    (error,) = errors_of(config)
    assert (error.line, error.key) == (1, "extends") and "is not of type 'string'" in error.message
