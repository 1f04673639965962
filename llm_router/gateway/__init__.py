"""`llm-router serve`: an OpenAI-compatible HTTP gateway on the same Router (optional extra `gateway`).

Modules, one job each: `config` (gateway.yaml: load, check, build; no web framework, so
`llm-router validate` uses it), `keys` (virtual keys, their limits and budgets on the state
backend), `schemas` (request bodies, the untrusted boundary), `convert` (router results as OpenAI
JSON), `errors` (router errors as OpenAI error envelopes), `runtime` (one loaded config: router,
state, keys), `app` and `chat` (the HTTP routes), `live` (the ASGI entry that swaps the runtime on
reload), `server` (sockets, uvicorn, signals, workers). Nothing here is imported by `import llm_router`.
"""
