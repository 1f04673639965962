"""The bound on a usage count is a billion tokens, as docs/guarantees.md states it: a count up to it is
usage, a count past it (or 2**80) is a provider's bug and is ignored. (test_hostile_replies.py checks
the shapes against the module's own constant; this pins the constant.)"""

from __future__ import annotations

import asyncio
import json

import pytest
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import Router

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("count", "read"), [(1_000_000_000, 1_000_000_000), (1_000_000_001, None), (2**80, None), (0, 0)])
async def test_a_usage_count_is_kept_up_to_a_billion_and_ignored_past_it(count: int, read: int | None) -> None:
    reply = json.dumps(openai_chat_reply("ok", prompt_tokens=7, completion_tokens=3)).replace('"prompt_tokens": 7',
                                                                                            f'"prompt_tokens": {count}')
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.raw(reply.encode(), headers={"content-type": "application/json"}))
        async with Router.from_dir(env={"OPENAI_API_KEY": "sk-usage-bounds-1", "OPENAI_BASE_URL": srv.url + "/v1"}) as router:
            async with asyncio.timeout(10):
                response = await router.query("gpt-4.1", HI)
    assert response.usage.input_tokens == read and response.usage.output_tokens == 3
