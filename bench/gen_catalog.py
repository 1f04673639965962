"""Write a synthetic catalog: N providers (each `extends: openai-compatible`) and M models over them.

    python bench/gen_catalog.py [DIR] [--models 1000] [--providers 50]

It is layered on the bundled catalog, which holds `openai-compatible`:
`Router.from_dir(bundled_dir, DIR)`. Without DIR it writes to a new temp dir and prints its path.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

PROVIDER = """# yaml-language-server: $schema=../schemas/provider.schema.json
extends: openai-compatible
name: {name}
description: Synthetic OpenAI-compatible provider {i} for the load benchmark.
base_url: https://api.{name}.example/v1
base_url_env: {env}_BASE_URL
auth: {{header: Authorization, scheme: Bearer, env: {env}_API_KEY}}
hosts: [api.{name}.example]
timeouts: {{connect_s: 5, read_s: 60, total_s: 120}}
"""

MODEL = """  {name}:
    provider: {provider}
    upstream: {upstream}
    description: Synthetic model {j} of {provider}.
    pricing: {{input_per_million: {inp}, output_per_million: {out}, cached_input_per_million: {cached}}}
    limits: {{rpm: {rpm}}}
    params: [temperature, max_tokens, top_p, stop, seed]
    defaults: {{max_tokens: 512}}
{fallbacks}"""


def write_catalog(root: Path, models: int = 1000, providers: int = 50) -> Path:
    (root / "providers.d").mkdir(parents=True, exist_ok=True)
    (root / "models.d").mkdir(parents=True, exist_ok=True)
    per_provider = -(-models // providers)
    made = 0
    for i in range(providers):
        name = f"synth{i:02d}"
        (root / "providers.d" / f"{name}.yaml").write_text(PROVIDER.format(name=name, i=i, env=name.upper()))
        entries = []
        for j in range(per_provider):
            if made == models:
                break
            model = f"{name}-model-{j:03d}"
            fallbacks = f"    fallbacks: [{name}-model-{j - 1:03d}]\n" if j else ""
            entries.append(MODEL.format(name=model, provider=name, upstream=f"m-{j}", j=j, inp=round(0.1 + j * 0.01, 2),
                                        out=round(0.4 + j * 0.02, 2), cached=0.05, rpm=100 + j, fallbacks=fallbacks))
            made += 1
        header = "# yaml-language-server: $schema=../schemas/models.schema.json\nmodels:\n"
        (root / "models.d" / f"{name}.yaml").write_text(header + "".join(entries))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?")
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=50)
    args = parser.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="llmr-catalog-"))
    print(write_catalog(root, args.models, args.providers))


if __name__ == "__main__":
    main()
