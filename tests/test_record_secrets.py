"""`llm-router record` masks what the call could send beyond the keys: the credentials of a
base-URL override (`https://user:password@proxy`), which the HTTP client sends as Basic auth and a
proxy may echo back."""

from __future__ import annotations

import yaml
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import catalog_dir
from llm_router.cli import main

PASSWORD = "pr0xy-Passw0rd-4242"


def test_base_url_credentials_echoed_by_the_server_are_masked_in_the_recorded_contract(tmp_path, capsys, monkeypatch) -> None:
    with MockServer() as server:
        server.route("POST", "/v1/chat/completions",
                     lambda req: Reply.json({**openai_chat_reply(f"hi {PASSWORD}"), "echo": req.headers.get("authorization")}))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-record-secrets-0001")
        monkeypatch.setenv("OPENAI_BASE_URL", server.url.replace("http://", f"http://proxyuser:{PASSWORD}@") + "/v1")
        out = tmp_path / "contracts" / "proxied.yaml"
        assert main(["record", "gpt-4.1", "Hello", "--dir", str(catalog_dir()), "--out", str(out)]) == 0, capsys.readouterr()
    text = out.read_text()
    assert PASSWORD not in text and "sk-record-secrets-0001" not in text, text
    reply = yaml.safe_load(text)["replies"][0]["body"]
    assert reply["choices"][0]["message"]["content"] == "hi ***"
    assert reply["echo"] == "Bearer ***"
