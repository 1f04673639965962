"""The schemas' `pattern`s mean what they mean to an editor (ECMA-262, as JSON Schema says): `$`
ends the text. Python's `$` also matches before a final newline, so without care
`"https://ab\\n"` would pass the base-URL pattern and a header value could end in a line feed."""

from __future__ import annotations

import json

import pytest

from llm_router.cli import main

PROVIDER = """\
name: acme
base_url: {base_url}
base_url_env: {base_url_env}
auth: {{header: {auth_header}, env: ACME_API_KEY}}
headers: {{{header_name}: {header_value}}}
hosts: [{host}]
operations:
  chat:
    path: /chat
    body: {{model: "{{{{ model.upstream }}}}", messages: "{{{{ messages }}}}"}}
    response:
      content: {content}
"""
CLEAN = {"base_url": "https://api.acme.test/v1", "base_url_env": "ACME_BASE_URL", "auth_header": "x-key",
         "header_name": "x-version", "header_value": "v1", "host": "api.acme.test", "content": "$.text"}
LINE = {"base_url": 2, "base_url_env": 3, "auth_header": 4, "header_value": 5, "host": 6, "content": 12}


def _validate(tmp_path, capsys, **fields: str) -> tuple[int, str]:
    values = {k: json.dumps(v) for k, v in {**CLEAN, **fields}.items()}  # a JSON string is a YAML string, \n escaped
    (tmp_path / "providers.d").mkdir(exist_ok=True)
    (tmp_path / "models.d").mkdir(exist_ok=True)
    (tmp_path / "providers.d/acme.yaml").write_text(PROVIDER.format(**values))
    (tmp_path / "models.d/m.yaml").write_text("models:\n  m: {provider: acme, pricing: unknown}\n")
    code = main(["validate", str(tmp_path)])
    return code, capsys.readouterr().out


def test_the_clean_provider_validates(tmp_path, capsys) -> None:
    code, out = _validate(tmp_path, capsys)
    assert code == 0, out


@pytest.mark.parametrize("field", ["base_url", "base_url_env", "auth_header", "header_value", "host"])
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_value_with_a_trailing_line_break_fails_its_pattern_at_its_line(tmp_path, capsys, field: str, ending: str) -> None:
    code, out = _validate(tmp_path, capsys, **{field: CLEAN[field] + ending})
    assert code == 1, out
    assert f"providers.d/acme.yaml:{LINE[field]}:" in out and "does not match" in out, out


def test_a_dollar_that_is_escaped_or_in_a_class_keeps_its_meaning(tmp_path, capsys) -> None:
    """`^\\$` (a JSONPath starts with '$') and `^(event|\\$.*)$` are read as written, not as an end of text."""
    code, out = _validate(tmp_path, capsys, content="$.choices[0].text")
    assert code == 0, out
    code, out = _validate(tmp_path, capsys, content="choices[0].text")
    assert code == 1 and f"providers.d/acme.yaml:{LINE['content']}:" in out and "is not a JSONPath" in out, out
