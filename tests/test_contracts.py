"""Provider contracts: `llm-router test` replays the bundled wire-format contracts, and a drift fails with a diff."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.cli import main
from llm_router.config import load_catalog

BUNDLED = catalog_dir()
CONTRACTS = BUNDLED / "providers.d" / "contracts"


def _contract(name: str) -> dict:
    """A bundled contract's data, YAML anchors unshared (a change to one place must not change the other)."""
    return json.loads(json.dumps(yaml.safe_load((CONTRACTS / f"{name}.yaml").read_text())))


def _layer(tmp_path: Path, *contracts: dict, files: dict[str, str] | None = None) -> Path:
    """A config dir holding `contracts` (and any other files), to layer over the bundled catalog."""
    folder = tmp_path / "providers.d" / "contracts"
    folder.mkdir(parents=True, exist_ok=True)
    for data in contracts:
        (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    files = files or {"models.d/none.yaml": "models: {}\n"}  # a config dir holds at least one config file
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["test", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- the bundled contracts are the wire-format tests of record ----------------------------------------


def test_bundled_contracts_all_pass_through_the_cli_in_seconds() -> None:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "llm_router", "test"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert " 0 failed" in done.stderr
    assert done.stdout.count("PASS ") == len(list(CONTRACTS.glob("*.yaml")))
    assert time.perf_counter() - started < 20  # the whole catalog replays in a second or two (plus interpreter start)


def test_every_bundled_provider_has_success_error_and_stream_contracts() -> None:
    catalog, _ = load_catalog([BUNDLED], {})
    contracts = [yaml.safe_load(p.read_text()) for p in sorted(CONTRACTS.glob("*.yaml"))]
    for name, provider in catalog.providers.items():
        if provider.abstract:
            continue
        mine = [c for c in contracts if c["provider"] == name]
        assert all(c["name"].startswith(f"{name}-") for c in mine), name
        assert all(c.get("source") for c in mine), f"{name}: every contract says where its shapes come from"
        assert any("error" not in c["expect"] for c in mine), f"{name}: no successful call"
        if name.startswith("bfl-"):
            continue  # regional BFL endpoints: one success each, the shapes are bfl's
        assert any("error" in c["expect"] for c in mine), f"{name}: no error reply"
        if any(op.stream is not None for op in provider.operations.values()):
            assert any(c["call"].get("stream") for c in mine), f"{name}: streams, but no stream transcript"
        if any(op.poll is not None for op in provider.operations.values()):
            polled = [c for c in mine if len(c["replies"]) > 2]
            assert any("error" in c["expect"] for c in polled), f"{name}: no poll sequence ending in a failure state"
            assert any("error" not in c["expect"] for c in polled), f"{name}: no poll sequence ending in Ready"


def test_every_operation_of_every_bundled_provider_has_a_successful_contract() -> None:
    catalog, _ = load_catalog([BUNDLED], {})
    contracts = [yaml.safe_load(p.read_text()) for p in CONTRACTS.glob("*.yaml")]
    for name, provider in catalog.providers.items():
        if provider.abstract:
            continue
        for kind in provider.operations:
            assert any(c["provider"] == name and "error" not in c["expect"] and
                       (catalog.models[c["call"]["model"]].kind if c["call"]["model"] in catalog.models else "image"
                        if "prompt" in c["call"] else "chat") == kind for c in contracts), f"{name}.{kind}"


# --- a drift fails with the exchange's name and a diff -------------------------------------------------


def test_changed_expected_body_key_fails_with_the_key_in_the_diff(tmp_path, capsys) -> None:
    data = _contract("openai-chat")
    data["request"]["body"]["top_p"] = data["request"]["body"].pop("temperature")
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert "FAIL openai-chat " in out
    assert "request.body.top_p: missing (expected 0.2)" in out
    assert "request.body.temperature: unexpected (got 0.2)" in out
    assert "PASS anthropic-chat" in out  # the others still run


def test_changed_expected_content_fails_with_both_values(tmp_path, capsys) -> None:
    data = _contract("anthropic-chat")
    data["expect"]["content"] = "something else"
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert 'content: expected "something else", got "{\\"items\\"' in out


def test_changed_expected_usage_fails_naming_the_field(tmp_path, capsys) -> None:
    data = _contract("gemini-chat")
    data["expect"]["usage"]["output_tokens"] = 418  # forgets the thinking tokens
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert "FAIL gemini-chat " in out
    assert "usage.output_tokens: expected 418, got 856" in out


def test_changed_stream_transcript_fails_on_the_chunks(tmp_path, capsys) -> None:
    data = _contract("anthropic-chat-stream")
    data["replies"][0]["sse"][4]["data"]["delta"]["text"] = " world"
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert 'chunks: expected ["Hello", " there", "!"], got ["Hello", " world", "!"]' in out


def test_poll_request_drift_fails_on_the_later_request(tmp_path, capsys) -> None:
    data = _contract("bfl-image")
    data["poll_request"]["path"] = "/v1/result"
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert "requests[1].path: expected /v1/result, got /v1/get_result" in out
    assert "requests[2].path: expected /v1/result, got /v1/get_result" in out


def test_expected_error_that_does_not_happen_fails(tmp_path, capsys) -> None:
    data = _contract("openai-chat-429")
    data["replies"] = _contract("openai-chat")["replies"]
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert "error: expected RateLimitError, but the call succeeded" in out
    assert "requests: expected 3 request(s), 1 were sent" in out


# --- tool calls, structured output, multi-turn state ---------------------------------------------------


def test_each_wire_format_has_tool_result_stream_and_structured_contracts() -> None:
    contracts = [yaml.safe_load(p.read_text()) for p in sorted(CONTRACTS.glob("*.yaml"))]
    for provider in ("openai", "anthropic", "gemini"):  # one per wire format: OpenAI Chat Completions, Messages, Gemini
        mine = [c for c in contracts if c["provider"] == provider and "error" not in c["expect"]]
        assert any(c["call"].get("tools") and c["expect"].get("tool_calls") for c in mine), f"{provider}: no tool-call reply"
        assert any(any(m["role"] == "tool" for m in c["call"].get("messages", [])) for c in mine), f"{provider}: no tool result"
        assert any(c["call"].get("stream") and c["expect"].get("tool_call_deltas") for c in mine), f"{provider}: no tool stream"
        assert any("response_format" in c["call"] for c in mine), f"{provider}: no structured output"
    for provider in ("anthropic", "gemini"):  # wires whose replies are replayed verbatim as provider state
        assert any(any("provider_state" in m for m in c["call"].get("messages", []))
                   for c in contracts if c["provider"] == provider), f"{provider}: no provider_state replay"


def test_call_tool_options_reach_the_request(tmp_path, capsys) -> None:
    data = _contract("openai-chat-tools")
    data["call"]["tool_choice"] = "required"
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert 'request.body.tool_choice: expected "auto", got "required"' in out


def test_tool_call_arguments_compare_as_json(tmp_path, capsys) -> None:
    data = _contract("openai-chat-tools")
    data["expect"]["tool_calls"][0]["arguments"] = '{  "location":"Boston, MA"  }'  # other whitespace: the same JSON
    _, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)), "--provider", "openai")
    assert "PASS openai-chat-tools" in out.splitlines(), out
    data["expect"]["tool_calls"][0]["arguments"] = '{"location": "Paris"}'
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)), "--provider", "openai")
    assert code == 1
    assert 'tool_calls[0].arguments.location: expected "Paris", got "Boston, MA"' in out


def test_tool_call_ids_are_compared_only_when_given(tmp_path, capsys) -> None:
    data = _contract("gemini-chat-tools")
    assert all("id" not in call for call in data["expect"]["tool_calls"])  # Gemini sends none: the router makes them up
    data["expect"]["tool_calls"][1]["id"] = "call_london"
    data["expect"]["tool_calls"].append({"name": "get_current_temperature", "arguments": "{}"})
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert "tool_calls: expected 3 call(s), got 2" in out
    data["expect"]["tool_calls"].pop()
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert "tool_calls[1].id: expected 'call_london', got 'call_" in out
    assert "tool_calls[0]" not in out


def test_message_compares_only_the_keys_given(tmp_path, capsys) -> None:
    data = _contract("anthropic-chat-tools")
    data["expect"]["message"] = {"role": "assistant"}
    _, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)), "--provider", "anthropic")
    assert "PASS anthropic-chat-tools" in out.splitlines(), out
    data = _contract("anthropic-chat-tools")
    data["expect"]["message"]["provider_state"]["data"][1]["input"]["units"] = "c"
    data["expect"]["message"]["reasoning"] = None
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert 'message.provider_state.data[1].input.units: expected "c", got "f"' in out
    assert "message.reasoning: missing (expected null)" in out


def test_native_finish_reason_is_the_providers_own(tmp_path, capsys) -> None:
    data = _contract("gemini-chat")
    assert (data["expect"]["finish_reason"], data["expect"]["native_finish_reason"]) == ("stop", "STOP")
    data["expect"]["native_finish_reason"] = "MAX_TOKENS"
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert 'native_finish_reason: expected "MAX_TOKENS", got "STOP"' in out
    assert "finish_reason: expected" not in out.replace("native_finish_reason", "")


def test_stream_tool_call_deltas_are_compared_in_order(tmp_path, capsys) -> None:
    data = _contract("anthropic-chat-tools-stream")
    del data["request"]  # the fragments, not the request, are under test here
    _, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)), "--provider", "anthropic")
    assert "PASS anthropic-chat-tools-stream" in out.splitlines(), out
    data["expect"]["tool_call_deltas"][2]["arguments"] = 'on": "L'
    data["expect"]["tool_call_deltas"][1]["name"] = "get_weather"  # a continuation fragment has no name
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert 'tool_call_deltas[1].name: expected "get_weather", got null' in out
    assert 'tool_call_deltas[2].arguments: expected "on\\": \\"L", got "on\\": \\"P"' in out


def test_stream_only_expectations_need_a_stream(tmp_path, capsys) -> None:
    data = _contract("openai-chat-tools")
    data["expect"]["tool_call_deltas"] = [{"index": 0, "name": "get_current_weather"}]
    data["expect"]["tool_calls"][0]["args"] = "{}"
    layer = _layer(tmp_path, data)
    code, out, _ = _run(capsys, str(BUNDLED), str(layer))
    assert code == 1
    assert "expect.tool_calls.0: unknown key 'args'" in out
    data["expect"]["tool_calls"][0].pop("args")
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert "expect.tool_call_deltas needs call.stream: true" in out


PROVIDER = """\
name: acme
base_url: https://api.acme.test/v1
auth: {header: Authorization, scheme: Bearer, env: ACME_API_KEY}
hosts: [api.acme.test]
operations:
  chat:
    path: /chat
    body: {model: "{{ model.upstream }}", messages: "{{ messages }}"}
    response:
      content: $.output.text
"""
MODELS = "models:\n  acme-1:\n    provider: acme\n    pricing: {input_per_million: 1, output_per_million: 1}\n"
ACME_CONTRACT = {
    "name": "acme-chat", "provider": "acme", "source": "test",
    "call": {"model": "acme-1", "messages": [{"role": "user", "content": "hi"}]},
    "request": {"method": "POST", "path": "/v1/chat"},
    "replies": [{"body": {"choices": [{"message": {"content": "Hi"}}]}}],
    "expect": {"content": "Hi"},
}


def test_a_drifted_jsonpath_in_a_provider_file_fails_its_contract(tmp_path, capsys) -> None:
    config = _layer(tmp_path, ACME_CONTRACT, files={"providers.d/acme.yaml": PROVIDER, "models.d/acme.yaml": MODELS})
    code, out, _ = _run(capsys, str(config))
    assert code == 1
    assert "FAIL acme-chat " in out
    assert "the call raised InvalidReplyError" in out and "$.output.text" in out


def test_format_json_lists_every_result_with_its_diffs(tmp_path, capsys) -> None:
    data = _contract("openai-chat")
    data["expect"]["content"] = "nope"
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)), "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["failed"] == 1
    failed = [r for r in report["results"] if not r["ok"]]
    assert [r["name"] for r in failed] == ["openai-chat"]
    assert failed[0]["file"].endswith("openai-chat.yaml") and failed[0]["line"] == 1
    assert any(d.startswith('content: expected "nope"') for d in failed[0]["diffs"])


def test_format_github_annotates_the_failing_contract_file(tmp_path, capsys) -> None:
    data = _contract("openai-chat")
    data["expect"]["finish_reason"] = "length"
    layer = _layer(tmp_path, data)
    code, out, _ = _run(capsys, str(BUNDLED), str(layer), "--format", "github")
    assert code == 1
    annotations = [line for line in out.splitlines() if line.startswith("::error ")]
    assert len(annotations) == 1
    assert f"file={layer / 'providers.d' / 'contracts' / 'openai-chat.yaml'},line=1::" in annotations[0]
    assert "contract openai-chat failed:%0Afinish_reason: expected \"length\", got \"stop\"" in annotations[0]


def test_provider_filter_runs_only_that_providers_contracts(capsys) -> None:
    code, out, err = _run(capsys, "--provider", "anthropic")
    names = [line.split()[1] for line in out.splitlines() if line.startswith("PASS ")]
    assert code == 0 and names and all(n.startswith("anthropic-") for n in names)
    assert "for provider anthropic" in err


def test_no_contracts_found_exits_2(capsys) -> None:
    code, _, err = _run(capsys, "--provider", "no-such-provider")
    assert code == 2 and "no contracts found" in err


def test_contract_problems_fail_the_run_with_file_and_line(tmp_path, capsys) -> None:
    data = _contract("openai-chat")
    data["replies"][0]["text"] = "also a text body"
    layer = _layer(tmp_path, data)
    code, out, _ = _run(capsys, str(BUNDLED), str(layer))
    assert code == 1
    assert f"{layer / 'providers.d' / 'contracts' / 'openai-chat.yaml'}:" in out
    assert "replies[0]: give exactly one of body, text, sse, base64 (got body, text)" in out


# --- reasoning, prompt caching and the cost by part -----------------------------------------------------


def test_each_wire_format_has_reasoning_contracts_and_anthropic_a_prompt_cache_one() -> None:
    contracts = [yaml.safe_load(p.read_text()) for p in sorted(CONTRACTS.glob("*.yaml"))]
    for provider in ("openai", "anthropic", "gemini"):
        mine = [c for c in contracts if c["provider"] == provider and "error" not in c["expect"]]
        thinking = [c for c in mine if "reasoning_effort" in c["call"].get("params", {})]
        assert thinking, f"{provider}: no reasoning_effort contract"
        assert any("reasoning_tokens" in c["expect"].get("usage", {}) or c["expect"].get("reasoning") for c in thinking), provider
    anthropic = [c for c in contracts if c["provider"] == "anthropic"]
    assert any(c["call"].get("stream") and c["expect"].get("reasoning") and "provider_state" in c["expect"].get("message", {})
               for c in anthropic if "reasoning_effort" in c["call"].get("params", {})), "no streamed thinking contract"
    cached = [c for c in anthropic if c["call"].get("prompt_cache")]
    assert any("cost_breakdown" in c["expect"] and "cache_control" in json.dumps(c["request"]["body"]) for c in cached)


def test_prompt_cache_reaches_the_request(tmp_path, capsys) -> None:
    data = _contract("anthropic-chat-prompt-cache")
    data["call"]["prompt_cache"] = False
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert 'request.body.tools[1].cache_control: missing (expected {"type": "ephemeral"})' in out
    assert 'request.body.system: expected [{"type": "text"' in out and 'got "You are a support agent' in out
    data["call"]["prompt_cache"] = {"system": False, "tools": True, "last_turns": 1}  # a mapping overrides the policy
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert "request.body.system: expected" in out and "request.body.messages[0].content: expected" in out
    assert "request.body.tools" not in out and "request.body.messages[2]" not in out


def test_a_malformed_prompt_cache_or_cost_part_is_a_contract_problem(tmp_path, capsys) -> None:
    data = _contract("anthropic-chat-prompt-cache")
    data["call"]["prompt_cache"] = {"everything": True}
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1 and "call.prompt_cache: {'everything': True} is not valid" in out
    data = _contract("anthropic-chat-prompt-cache")
    data["expect"]["cost_breakdown"]["total"] = 0.003963
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1 and "expect.cost_breakdown: unknown key 'total'" in out
    data = _contract("anthropic-chat-429")
    data["expect"]["cost_breakdown"] = None
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1 and "expect: cost_breakdown cannot be used with error" in out


def test_cost_breakdown_compares_only_the_parts_given_to_1e_9(tmp_path, capsys) -> None:
    data = _contract("anthropic-chat-prompt-cache")
    data["expect"]["cost_breakdown"] = {"cache_write": 0.001545 + 5e-10, "output": 0.00144}
    _, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)), "--provider", "anthropic")
    assert "PASS anthropic-chat-prompt-cache" in out.splitlines(), out
    data["expect"]["cost_breakdown"] = {"cached_input": 0.00321, "cache_write": 0.001545}  # cache reads at the input price
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert "cost_breakdown.cached_input: expected 0.00321, got 0.000963" in out
    assert "cost_breakdown.cache_write" not in out
    data["expect"]["cost_breakdown"] = None
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1 and 'cost_breakdown: expected null, got {"input": 1.5e-05, "cached_input": 0.000963' in out


def test_an_unpriced_model_has_no_cost_breakdown(tmp_path, capsys) -> None:
    unpriced = MODELS.replace("pricing: {input_per_million: 1, output_per_million: 1}", "pricing: unknown")
    data = {**ACME_CONTRACT, "replies": [{"body": {"output": {"text": "Hi"}}}],
            "expect": {"content": "Hi", "cost": None, "cost_breakdown": None}}
    files = {"providers.d/acme.yaml": PROVIDER, "models.d/acme.yaml": unpriced}
    code, out, _ = _run(capsys, str(_layer(tmp_path, data, files=files)))
    assert code == 0 and "PASS acme-chat" in out, out
    data["expect"]["cost_breakdown"] = {"input": 0}
    code, out, _ = _run(capsys, str(_layer(tmp_path, data, files=files)))
    assert code == 1 and 'cost_breakdown: expected {"input": 0}, got null' in out


def test_streamed_thinking_comes_back_as_reasoning_and_a_signed_block(tmp_path, capsys) -> None:
    data = _contract("anthropic-chat-thinking-stream")
    events = data["replies"][0]["sse"]
    signature = next(e["data"]["delta"] for e in events if e["data"].get("delta", {}).get("type") == "signature_delta")
    signature["signature"] = "Zm9yZ2Vk"
    thinking = next(e["data"]["delta"] for e in events if e["data"].get("delta", {}).get("type") == "thinking_delta")
    thinking["thinking"] = "Hard educ"
    code, out, _ = _run(capsys, str(BUNDLED), str(_layer(tmp_path, data)))
    assert code == 1
    assert 'message.provider_state.data[0].signature: expected "c3ludGhldGljLXNpZ25hdHVyZS1maXh0dXJl' in out
    assert 'got "Zm9yZ2Vk"' in out
    assert 'reasoning: expected "Simple educational question' in out and 'got "Hard educational question' in out
    assert "chunks:" not in out and "content:" not in out  # the text block is untouched


# --- contracts are not runtime config ------------------------------------------------------------------


def test_router_from_dir_never_loads_contracts(write_config) -> None:
    config = write_config({
        "providers.d/acme.yaml": PROVIDER, "models.d/acme.yaml": MODELS,
        "providers.d/contracts/acme-broken.yaml": "name: [unclosed\n",
    })
    router = Router.from_dir(config, env={"ACME_API_KEY": "k"})
    assert "acme-1" in router.models
    assert main(["validate", str(config)]) == 1
