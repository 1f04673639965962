"""Secrets: the redactor masks a key in every form a provider may echo it (as written, percent-
encoded, JSON-escaped, cut by an excerpt), a base URL's user:password too; and no object in the
engine's frames shows a key, so a traceback rendered with its local variables (as error trackers
render them) holds none."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mockserver import BflSimulator, MockServer, Reply
from tracebacks import rendered_with_locals

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.errors import RouterError
from llm_router.secrets import MASK, ROTATING_KEPT, Redactor, Secret, WireValue, mask_userinfo

KEY = "sk-te/st+k3y=0123456789abcdef"


def redact(text: str, *keys: str) -> str:
    return Redactor(Secret(k) for k in keys or (KEY,))(text)


# --- the redactor ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", [
    KEY,
    quote(KEY, safe=""),                                       # a query string
    quote(KEY, safe="").lower(),                               # lower-case hex
    json.dumps(KEY)[1:-1].replace("/", "\\/"),                 # PHP's json_encode
    KEY.replace("+", "\\u002b").replace("=", "\\u003D"),      # .NET escapes + and =
    "".join(f"\\u{ord(c):04x}" for c in KEY),                  # every character escaped
    KEY.replace("/", "%2F"),                                   # one character percent-encoded
])
@pytest.mark.parametrize("around", ["{}", "error: {} was rejected", '{{"key": "{}"}}', "x{}x"])
def test_a_key_echoed_in_any_encoding_is_masked(form: str, around: str) -> None:
    text = around.format(form)
    masked = redact(text)
    assert MASK in masked
    assert form not in masked and "0123456789" not in masked, masked
    assert masked.replace(MASK, "") == around.format(""), "only the key is masked"


@pytest.mark.parametrize("cut", [6, 10, len(KEY) - 1])
@pytest.mark.parametrize("tail", ["", "…", "...", "  ", "…\n"])
def test_a_key_cut_at_the_end_of_an_excerpt_is_masked(cut: int, tail: str) -> None:
    text = "the provider said: your key " + KEY[:cut] + tail
    masked = redact(text)
    assert KEY[:cut] not in masked, masked
    assert masked.startswith("the provider said: your key ***")


def test_a_key_cut_inside_an_escape_is_masked() -> None:
    escaped = json.dumps(KEY)[1:-1].replace("/", "\\/")  # sk-te\/st+...
    for cut in range(7, len(escaped)):  # from six characters of the key on
        masked = redact("body: " + escaped[:cut])
        assert masked == "body: ***", (cut, masked)


def test_ordinary_text_and_short_prefixes_are_left_alone() -> None:
    for text in ["nothing secret here", "sk-", "sk-t", "a sk-te word", "50% off \\n", ""]:
        assert redact(text) == text


def test_a_short_value_is_never_looked_for_in_text() -> None:
    assert Redactor([Secret("abc")])("abc abcd") == "abc abcd"


def test_the_longest_key_is_masked_whole_when_one_key_contains_another() -> None:
    assert redact("A-long-key-123 and A-long", "A-long", "A-long-key-123") == "*** and ***"


@settings(max_examples=300, deadline=None)
@given(key=st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=8, max_size=40),
       before=st.text(max_size=30), after=st.text(max_size=30),
       encoding=st.sampled_from(["raw", "json", "json-slash", "percent", "unicode-escape"]))
@example(key="0000\\%00", before="", after="", encoding="json").via("a backslash and a percent-escape in the key")
@example(key='n$"Qs4kB7,92', before="TU\\", after="", encoding="json").via("a backslash before, making `\\n` of the key")
def test_property_a_key_is_never_left_in_text_whatever_surrounds_it(key: str, before: str, after: str, encoding: str) -> None:
    form = {"raw": key, "json": json.dumps(key)[1:-1], "json-slash": json.dumps(key)[1:-1].replace("/", "\\/"),
            "percent": quote(key, safe=""), "unicode-escape": "".join(f"\\u{ord(c):04X}" for c in key)}[encoding]
    masked = Redactor([Secret(key)])(before + form + after)
    assert form not in masked
    assert MASK in masked


@settings(max_examples=200, deadline=None)
@given(key=st.text(st.characters(codec="ascii", categories=("L", "N", "P")), min_size=12, max_size=40),
       text=st.text(max_size=40), cut=st.integers(min_value=6))
def test_property_a_key_cut_by_truncation_leaves_at_most_five_of_its_characters(key: str, text: str, cut: int) -> None:
    shown = (text + key)[: len(text) + min(cut, len(key) - 1)]
    masked = Redactor([Secret(key)])(shown + "…")
    assert key[:6] not in masked


def test_a_rotating_secret_is_masked_while_it_is_one_of_the_last_few_and_a_key_always() -> None:
    """A token refreshed every hour for a month: the redactor masks the key and the last
    ROTATING_KEPT tokens of each name, and does not grow by one value an hour."""
    redact = Redactor([Secret("sk-the-static-key-123")])
    tokens = [f"tok-{hour:04d}-abcdef" for hour in range(24 * 30)]
    for token in tokens:
        redact.add(Secret(token), rotating="token")
        redact.add(Secret("assert-" + token), rotating="assertion")
    text = " ".join(["sk-the-static-key-123", *tokens[-ROTATING_KEPT:], "assert-" + tokens[-1]])
    assert redact(text) == " ".join([MASK] * (ROTATING_KEPT + 2))
    assert redact(tokens[-ROTATING_KEPT - 1]) == tokens[-ROTATING_KEPT - 1]  # expired long ago: plain text now
    assert redact.echoed_in(tokens[-1].encode()) and not redact.echoed_in(tokens[0].encode())
    static_forms = 1  # the key is its own percent-encoded forms
    assert len(redact._values) == static_forms + 2 * ROTATING_KEPT


def test_data_masks_every_string_and_key_of_a_reply_nested_any_depth() -> None:
    deep: list[object] = [KEY]
    for _ in range(50_000):
        deep = [deep]
    masked = Redactor([Secret(KEY)]).data({"a": [KEY, {KEY: f"x{KEY}"}], "n": 1, "deep": deep, "t": (KEY,)})
    assert masked["a"] == [MASK, {MASK: f"x{MASK}"}] and masked["n"] == 1 and masked["t"] == [MASK]
    inner = masked["deep"]
    while isinstance(inner, list) and isinstance(inner[0], list):
        inner = inner[0]
    assert inner == [MASK]


@pytest.mark.parametrize(("url", "shown"), [
    ("https://bob:s3cret-pass@proxy.example/v1", "https://***@proxy.example/v1"),
    ("https://tok-123456@proxy.example/v1?x=1", "https://***@proxy.example/v1?x=1"),
    ("https://proxy.example/v1/a@b", "https://proxy.example/v1/a@b"),
    ("https://a:b@c@proxy.example", "https://***@proxy.example"),
    ("not a url", "not a url"),
])
def test_mask_userinfo_masks_only_what_precedes_the_host(url: str, shown: str) -> None:
    assert mask_userinfo(url) == shown


def test_credentials_in_a_url_are_masked_in_every_form_they_travel() -> None:
    redactor = Redactor()
    redactor.add_url("https://bob:pa%24sw0rd@proxy.example/v1")
    basic = base64.b64encode(b"bob:pa$sw0rd").decode()
    text = f"pa$sw0rd; pa%24sw0rd; bob:pa$sw0rd; Authorization: Basic {basic}"
    assert redactor(text) == "***; ***; ***; Authorization: Basic ***"
    assert redactor.url("https://bob:x@proxy.example/v1") == "https://***@proxy.example/v1"


def test_a_wire_value_is_a_plain_string_on_the_wire_and_masked_in_any_repr() -> None:
    value = WireValue(f"Bearer {KEY}")
    assert value == f"Bearer {KEY}" and f"{value}" == f"Bearer {KEY}" and value.encode() == f"Bearer {KEY}".encode()
    assert KEY not in repr(value) and KEY not in repr({"authorization": value}) and KEY not in repr([value])
    assert KEY not in str({"h": value})


# --- tracebacks with local variables, over real HTTP ---------------------------------------------------------------------


def _rendered(exc: BaseException) -> str:
    return rendered_with_locals(exc, leave_out=__file__)


def _query_key_provider(url: str) -> str:
    return f"""\
extends: openai-compatible
name: qkey
base_url: {url}
base_url_env: QKEY_BASE_URL
auth: {{query: key, env: QKEY_KEY}}
hosts: [127.0.0.1]
errors:
  retry: {{max_attempts: 2, backoff: {{initial_s: 0.01, max_s: 0.02}}}}
"""


def _secret_free(exc: BaseException, *secrets: str) -> None:
    text = _rendered(exc)
    assert "runtime = ProviderRuntime(" in text, text[-3000:]  # the engine's frames were rendered, with their locals
    for secret in secrets:
        assert secret not in text, [line for line in text.splitlines() if secret in line][:3]


@pytest.mark.parametrize("status", [400, 401, 500])
async def test_a_failing_call_renders_no_key_in_a_traceback_with_locals(status: int) -> None:
    with MockServer() as srv:
        # (a reply that echoes the key: test_secret_echoes.py)
        srv.route("POST", "/v1/chat/completions", Reply.json({"error": {"message": "no"}}, status=status))
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            with pytest.raises(RouterError) as info:
                async with asyncio.timeout(20):
                    await router.query("openai/gpt-x", messages=[{"role": "user", "content": "hi"}])
        assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it did go over the wire
    _secret_free(info.value, KEY)


async def test_a_key_sent_in_the_query_string_is_in_no_traceback(write_config) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json({"error": {"message": "bad"}}, status=400))
        cfg = write_config({"providers.d/qkey.yaml": _query_key_provider(srv.url + "/v1"),
                            "models.d/m.yaml": "models:\n  m: {provider: qkey, pricing: unknown}\n"})
        async with Router.from_dir(catalog_dir(), cfg, env={"QKEY_KEY": KEY}) as router:
            with pytest.raises(RouterError) as info:
                async with asyncio.timeout(20):
                    await router.query("m", messages=[{"role": "user", "content": "hi"}])
            shown = router.render("m", messages=[{"role": "user", "content": "hi"}])
        assert srv.requests[0].query["key"] == KEY
    _secret_free(info.value, KEY, quote(KEY, safe=""))
    assert shown["query"]["key"] == MASK and KEY not in json.dumps(shown)


async def test_a_connection_error_renders_no_key_in_a_traceback_with_locals() -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.reset())
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            with pytest.raises(RouterError) as info:
                async with asyncio.timeout(30):
                    await router.query("openai/gpt-x", messages=[{"role": "user", "content": "hi"}])
    _secret_free(info.value, KEY)


async def test_a_failed_image_job_renders_no_key_in_a_traceback_with_locals() -> None:
    with MockServer() as srv:
        BflSimulator(srv, api_key=KEY, pending_polls=0, final_status="Error", details="failed")
        env = {"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            with pytest.raises(RouterError) as info:
                async with asyncio.timeout(30):
                    await router.query("bfl/flux-pro-1.1", prompt="a cat")
    _secret_free(info.value, KEY)


# --- credentials in a base-URL override --------------------------------------------------------------------------------------


async def test_credentials_in_a_base_url_override_are_masked_in_render_errors_and_the_routers_logs(caplog) -> None:
    password = "pr0xy-Passw0rd-42"
    with MockServer() as srv:
        base = srv.url.replace("http://", f"http://proxyuser:{password}@") + "/v1"
        srv.route("POST", "/v1/chat/completions", Reply.json({"error": {"message": f"denied for {password}"}}, status=403))
        caplog.set_level(logging.DEBUG)
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": base}
        async with Router.from_dir(env=env) as router:
            shown = router.render("openai/gpt-x", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(RouterError) as info:
                async with asyncio.timeout(20):
                    await router.query("openai/gpt-x", messages=[{"role": "user", "content": "hi"}])
            runtime_repr = repr(router._engine.runtimes["openai"])
        sent = srv.requests[0].headers.get("authorization")
    assert sent is not None and password not in sent  # (the HTTP client turns the URL's user:password into Basic auth)
    assert shown["url"].startswith("http://***@127.0.0.1:")
    # the router's own log lines (the HTTP client's own request line is the send path's to mask)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("llm_router"))
    texts = [json.dumps(shown), str(info.value), repr(info.value), logged, runtime_repr]
    for text in texts:
        assert password not in text and KEY not in text, text[:500]
    assert MASK in str(info.value)


def test_a_backslash_just_before_an_escaped_key_does_not_hide_it():
    """Found by the property test above (CI, 2026-11-30): `\\` + the key as \\uXXXX escapes was left whole."""
    redact = Redactor([Secret(":0000000")])
    escaped = "".join(f"\\u{ord(c):04X}" for c in ":0000000")
    assert escaped not in redact("\\" + escaped)
    assert redact("\\" + escaped).startswith("\\")
