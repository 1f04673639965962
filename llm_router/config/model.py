"""The typed, frozen config. Built once from schema-checked data; the hot path reads attributes.

Each class mirrors one object of the JSON Schemas in schemas/ (field names and defaults are the
schema's; tests/test_schema_agreement.py proves they agree). Templates and JSONPaths are stored
compiled. Plain frozen dataclasses rather than pydantic models: the data was already validated by
the JSON Schema, so a second validation pass would only cost import and load time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._records import frozen
from ..errors import DEFAULT_FALLBACK_ON

if TYPE_CHECKING:  # annotations only: importing the config types pulls in neither Jinja nor the JSONPath library
    from ..paths import JSONPath
    from ..templating import CompiledTemplate

EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return EMPTY


@frozen
class UsagePaths:
    input_tokens: tuple[JSONPath, ...] = ()
    output_tokens: tuple[JSONPath, ...] = ()
    cached_input_tokens: tuple[JSONPath, ...] = ()
    cache_write_tokens: tuple[JSONPath, ...] = ()
    reasoning_tokens: tuple[JSONPath, ...] = ()
    search_units: tuple[JSONPath, ...] = ()
    characters: tuple[JSONPath, ...] = ()
    audio_seconds: tuple[JSONPath, ...] = ()
    video_seconds: tuple[JSONPath, ...] = ()
    # derived: the lookups every path above begins with (`$.usage`); where they find nothing, no path
    # finds a count (most stream events), so nothing more is read
    head: Callable[[Any], Any] | None = None
    # derived: (its place among Usage's fields, its paths, whether it is counted whole) of each count declared
    counted: tuple[tuple[int, tuple[JSONPath, ...], bool], ...] = ()


@frozen
class ToolCallPaths:
    """Where tool calls are in a reply (or tool-call fragments in a stream event)."""

    items: JSONPath | None = None  # each match is one call; None: the reply (or event) itself is one
    index: JSONPath | None = None  # streams: which call a fragment belongs to; None: each item is a new call
    id: JSONPath | None = None
    name: JSONPath | None = None
    arguments: JSONPath | None = None  # JSON text, or an object (serialised as written)


@frozen
class JobUrl:
    """A URL of a submitted job (poll, result, cancel): one of the two is set."""

    from_: JSONPath | None = None  # into the submit reply
    template: CompiledTemplate | None = None  # variables: submit, model, params


@frozen
class EmptyResult:
    kind: str  # the error kind raised when `content` finds nothing
    message: JSONPath | None = None


@frozen
class VectorPaths:
    """Where an embed reply's vectors are."""

    items: JSONPath
    vector: JSONPath
    index: JSONPath | None = None  # None: the items are in the order of the inputs
    encoding: str = "float"  # float | base64_f32le


@frozen
class RankingPaths:
    """Where a rerank reply's ranked documents are."""

    items: JSONPath
    index: JSONPath
    score: JSONPath


@frozen
class BinaryBody:
    """The reply body is the result (audio, an image, a video)."""

    max_bytes: int = 52428800


@frozen
class Extraction:
    content: JSONPath | None = None  # for text, every match is joined; None: `vectors`, `ranking` or `binary` is the result
    content_kind: str = "text"
    finish_reason: JSONPath | None = None
    id: JSONPath | None = None
    usage: UsagePaths = UsagePaths()
    tool_calls: ToolCallPaths | None = None
    reasoning: JSONPath | None = None  # every match joined
    state: JSONPath | None = None  # what the next turn must send back to this wire format, verbatim
    extra: Mapping[str, JSONPath] = field(default_factory=_empty)
    url: JobUrl | None = None  # poll results only: fetch the result here once the job is done
    empty: EmptyResult | None = None
    vectors: VectorPaths | None = None
    ranking: RankingPaths | None = None
    binary: BinaryBody | None = None
    # derived: the values config reads from reply headers ({header: name}), by field: finish_reason,
    # id, or extra.<name> → the header's name (lower case)
    headers: Mapping[str, str] = field(default_factory=_empty)
    # derived, for a chat reply: what the heads of content, finish_reason, id, tool_calls' items,
    # reasoning, state, each extra and each usage path (in `usage.counted` order) find, in one walk (paths.heads)
    heads: Callable[[Any], tuple[Any, ...]] | None = None


@frozen
class Backoff:
    initial_s: float = 0.5
    factor: float = 2
    max_s: float = 8
    jitter: str = "full"


@frozen
class RetryPolicy:
    max_attempts: int = 3
    backoff: Backoff = Backoff()
    retry_after: tuple[str, ...] = ("retry-after-ms", "retry-after")
    max_wait_s: float = 20


@frozen
class ClassifyWhen:
    path: JSONPath
    in_: frozenset[Any]


@frozen
class ClassifyRule:
    status: frozenset[int]
    kind: str
    when: ClassifyWhen | None = None


@frozen
class ErrorPolicy:
    message: JSONPath | None = None
    code: JSONPath | None = None
    retry: RetryPolicy = RetryPolicy()
    classify: tuple[ClassifyRule, ...] = ()


@frozen
class StateBlock:
    """A stream event that opens or extends one content block of the provider state."""

    index: JSONPath
    start: JSONPath | None = None
    append: Mapping[str, JSONPath] = field(default_factory=_empty)
    json: Mapping[str, JSONPath] = field(default_factory=_empty)


@frozen
class StreamHandler:
    delta: JSONPath | None = None
    finish_reason: JSONPath | None = None
    usage: UsagePaths | None = None
    end: bool = False
    error: JSONPath | None = None
    tool_calls: ToolCallPaths | None = None
    reasoning: JSONPath | None = None
    state: JSONPath | None = None  # appended across events (a list extends)
    state_block: StateBlock | None = None
    extra: Mapping[str, JSONPath] = field(default_factory=_empty)
    # derived: what the heads of delta, finish_reason, usage, tool_calls' items and reasoning find,
    # in one walk (paths.heads); where one finds nothing, that part of the event is not read
    heads: Callable[[Any], tuple[Any, ...]] | None = None


@frozen
class StreamSpec:
    body: CompiledTemplate  # derived: the operation body with the stream body deep-merged in
    own_keys: frozenset[str] = frozenset()  # derived: the keys the stream block's own body sets (stream, stream_options)
    path: CompiledTemplate | None = None
    query: CompiledTemplate | None = None
    format: str = "sse"  # sse | ndjson | aws_eventstream
    max_frame_bytes: int = 8388608
    exception_status: Mapping[str, int] = field(default_factory=_empty)  # aws_eventstream: exception type → HTTP status
    route_by: str | None = None
    route_path: JSONPath | None = None  # derived: route_by compiled, when it is a JSONPath
    on: Mapping[str, StreamHandler] = field(default_factory=_empty)
    handler: StreamHandler | None = None
    error: JSONPath | None = None  # an event with a value here is an error, whatever its route
    done: str | None = None
    unknown_event: str = "ignore"


@frozen
class PollBackoff:
    factor: float = 1.5
    max_s: float = 5


def status_key(value: Any) -> tuple[bool, Any]:
    """A poll status as a JSON value: `true` is not 1 (as it is in Python), nor "true"."""
    return type(value) is bool, value


@frozen
class FailedWhen:
    path: JSONPath
    message: JSONPath | None = None
    code: JSONPath | None = None


@frozen
class PollSpec:
    url: JobUrl
    status: JSONPath
    pending: frozenset[tuple[bool, Any]]  # each a status_key
    done: frozenset[tuple[bool, Any]]
    result: Extraction
    method: str = "GET"
    interval_s: float = 1.0
    backoff: PollBackoff | None = None
    deadline_s: float = 300
    max_polls: int = 600
    failed: frozenset[tuple[bool, Any]] = frozenset()
    unknown: str = "fail"
    missing: str = "fail"  # fail | pending: the status path finds nothing
    message: JSONPath | None = None
    failed_when: FailedWhen | None = None


@frozen
class CancelSpec:
    method: str
    url: JobUrl
    timeout_s: float = 5


@frozen
class ParamPlacement:
    mode: str = "none"  # "merge" | "none" | "into"
    merge_into: str | None = None


@frozen
class PartTemplates:
    """How each kind of canonical content part is written in a wire format (None: not accepted)."""

    text: CompiledTemplate | None = None  # variable: part {text}
    image_url: CompiledTemplate | None = None  # part {url, detail}
    image_data: CompiledTemplate | None = None  # part {media_type, data, detail}: an image sent as a data: URL
    file: CompiledTemplate | None = None  # part {media_type, data, filename, file_id}
    tool_call: CompiledTemplate | None = None  # call {id, name, arguments (object), arguments_json}
    tool_result: CompiledTemplate | None = None  # result {call_id, name, content, json}


@frozen
class CacheBreakpoints:
    """Where prompt-cache markers go, for wire formats that need them placed (Anthropic)."""

    marker: Mapping[str, Any]
    system: bool = False
    tools: bool = False
    last_turns: int = 0


@frozen
class Conversation:
    """How canonical messages, tools and output formats map to one wire format."""

    wire: str
    system: str = "inline"  # inline | separate (the `system` variable)
    roles: Mapping[str, str] = field(default_factory=_empty)
    merge_consecutive: bool = False
    text_content: str = "parts"  # parts | string (plain-text content stays a string)
    message: CompiledTemplate | None = None  # variables: role, parts; None: {role, content: parts}
    parts: PartTemplates = PartTemplates()
    tool: CompiledTemplate | None = None  # variable: tool {name, description, parameters, strict}
    tool_choice: Mapping[str, CompiledTemplate] = field(default_factory=_empty)  # auto|none|required|function
    structured_output: str = "native"  # native | tool (a forced single tool whose input is the answer)
    cache: CacheBreakpoints | None = None
    forced_tools_with_reasoning: str = "allow"  # allow | refuse


@frozen
class CallIds:
    length: int  # tool call ids sent are letters and digits of exactly this length


@frozen
class Operation:
    kind: str
    path: CompiledTemplate
    method: str = "POST"
    query: CompiledTemplate | None = None
    headers: CompiledTemplate | None = None
    body: CompiledTemplate | None = None
    params: ParamPlacement = ParamPlacement()
    response: Extraction | None = None
    stream: StreamSpec | None = None
    poll: PollSpec | None = None
    cancel: CancelSpec | None = None
    conversation: Conversation | None = None
    call_ids: CallIds | None = None
    finish_reasons: Mapping[str, str] = field(default_factory=_empty)  # native → stop | length | tool_calls | content_filter
    encoding: str = "json"  # json | multipart | form
    arrays: str = "repeat"  # multipart and form lists: repeat | brackets
    file_params: frozenset[str] = frozenset()  # params that carry a file
    max_file_bytes: int = 26214400


@frozen
class TokenExchange:
    """An OAuth2-style token endpoint: the form that gets a token, where the token and its lifetime are."""

    url: CompiledTemplate  # variables: vars
    form: CompiledTemplate  # variables: vars, key (the secret in auth.env)
    access_token: JSONPath  # derived default: $.access_token
    expires_in: JSONPath  # derived default: $.expires_in
    headers: CompiledTemplate | None = None
    lifetime_s: float = 3600
    refresh_before_s: float = 60


@frozen
class GoogleServiceAccount:
    credentials_env: str
    scopes: tuple[str, ...]
    lifetime_s: float = 3600
    refresh_before_s: float = 60


@frozen
class AwsSigV4:
    service: str
    region: CompiledTemplate  # variables: vars


@frozen
class Auth:
    env: str | None = None  # None: a mechanism that reads its own credentials (google_service_account, aws_sigv4)
    header: str | None = None
    scheme: str | None = None
    query: str | None = None
    optional: bool = False
    token: TokenExchange | None = None
    google_service_account: GoogleServiceAccount | None = None
    aws_sigv4: AwsSigV4 | None = None


@frozen
class Var:
    """A non-secret value from the environment (a region, a project), for templates and `{name}` in URLs."""

    env: tuple[str, ...]  # the first one set wins
    default: str | None = None
    description: str = ""


@frozen
class Timeouts:
    connect_s: float = 10
    read_s: float = 120
    write_s: float = 30
    pool_s: float = 10
    total_s: float = 600


@frozen
class ProviderConfig:
    name: str
    base_url: str
    file: str = ""
    description: str = ""
    price_sheet_id: str | None = None  # its id in price data files (models.dev); None: its name
    abstract: bool = False
    base_url_env: str | None = None
    vars: Mapping[str, Var] = field(default_factory=_empty)
    auth: Auth | None = None
    headers: Mapping[str, str] = field(default_factory=_empty)
    hosts: tuple[str, ...] = ()
    timeouts: Timeouts = Timeouts()
    max_connections: int = 100
    operations: Mapping[str, Operation] = field(default_factory=_empty)
    errors: ErrorPolicy = ErrorPolicy()


@frozen
class PriceTier:
    """Prices for a whole request whose input exceeds `above_input_tokens` (None: the base price)."""

    above_input_tokens: int
    input_per_million: float | None = None
    output_per_million: float | None = None
    cached_input_per_million: float | None = None
    cache_write_per_million: float | None = None


@frozen
class PriceByParam:
    param: str
    prices: Mapping[str, float]


@frozen
class SecondsFrom:
    param: str
    default: float


@frozen
class Pricing:
    input_per_million: float | None = None
    output_per_million: float | None = None
    cached_input_per_million: float | None = None
    cache_write_per_million: float | None = None
    per_image: float | None = None
    per_image_by_size: Mapping[str, float] = field(default_factory=_empty)
    reasoning_per_million: float | None = None
    tiers: tuple[PriceTier, ...] = ()  # by ascending threshold
    per_image_by_quality: Mapping[str, Mapping[str, float]] = field(default_factory=_empty)
    per_request: float | None = None
    per_search_unit: float | None = None
    per_million_characters: float | None = None
    per_audio_second: float | None = None
    per_output_second: float | None = None
    per_output_second_by: PriceByParam | None = None
    seconds_from: SecondsFrom | None = None
    source: str = ""


@frozen
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_wait_s: float | None = None


@frozen
class Deployment:
    """One place that serves a model: a provider, with its own upstream name, key, base URL,
    weight, limits and price where they differ. The builder fills in every derived value."""

    provider: str
    name: str = ""  # derived when not given: "<provider>", or "<provider>#<i>" when a provider repeats
    upstream: str = ""  # derived when not given: the model's upstream
    key_env: str | None = None  # None: the provider's auth.env
    base_url_env: str | None = None  # None: the provider's base_url_env
    weight: float = 1
    limits: Limits = Limits()
    pricing: Pricing | None = None  # derived when not given: the model's


@frozen
class ReasoningTarget:
    """What one reasoning effort becomes for a model (the `reasoning` variable of templates)."""

    effort: str | None = None
    budget: int | None = None
    level: str | None = None


@frozen
class ReasoningBudget:
    min: int
    max: int


@frozen
class ReasoningMaxTokens:
    param: str
    when_not_above: str = "raise"  # raise | refuse


@frozen
class Reasoning:
    efforts: Mapping[str, ReasoningTarget]
    budget: ReasoningBudget | None = None
    max_tokens: ReasoningMaxTokens | None = None
    drops: frozenset[str] = frozenset()  # params left out when the call reasons


@frozen
class Cooldown:
    """Skip a deployment for `cooldown_s` after `failures` counted failures within `window_s`."""

    failures: int = 3
    window_s: float = 60.0
    cooldown_s: float = 30.0


@frozen
class ModelConfig:
    name: str
    provider: str  # with `deployments`: derived, the first deployment's provider
    upstream: str
    pricing: Pricing | None  # None: the price is unknown, so cost is None
    file: str = ""
    kind: str = "chat"  # chat | image | embed | rerank | speech | transcribe | video
    description: str = ""
    limits: Limits = Limits()
    params: frozenset[str] = frozenset()
    capabilities: frozenset[str] = frozenset()  # tools | vision | structured_output
    structured_output: str | None = None  # native | tool; None: the provider's conversation.structured_output
    reasoning: Reasoning | None = None  # None: reasoning_effort is an ordinary param (allow-listed or not)
    defaults: Mapping[str, Any] = field(default_factory=_empty)
    rename: Mapping[str, str] = field(default_factory=_empty)
    fallbacks: tuple[str, ...] = ()
    on_unsupported_param: str | None = None
    streaming: bool = True
    deployments: tuple[Deployment, ...] = ()  # empty: the single-provider form
    strategy: str | None = None  # None: the router's
    cooldown: Cooldown | None = None  # None: the router's (and none when the router sets none)


@frozen
class Budget:
    scope: str  # router | model | provider
    period: str  # day | month (UTC)
    limit_usd: float
    name: str | None = None  # the model or provider; None for the router scope
    on_exceed: str = "raise"  # raise | fallback


@frozen
class StateSettings:
    backend: str = "local"  # local | redis
    url: str | None = None
    url_env: str | None = None
    key_prefix: str = "llm-router:"
    on_error: str = "local"  # local | fail


@frozen
class RouterSettings:
    on_unsupported_param: str = "raise"
    fallback_on: frozenset[str] = DEFAULT_FALLBACK_ON
    limit_wait_s: float = 10
    log_content: bool = False
    prompt_cache: bool = False  # cache breakpoints for calls that do not say (prompt_cache=)
    strategy: str = "ordered"
    cooldown: Cooldown | None = None  # None: no cooldowns unless a model declares one
    budgets: tuple[Budget, ...] = ()
    state: StateSettings = StateSettings()


@frozen
class Catalog:
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelConfig]
    settings: RouterSettings = field(default_factory=RouterSettings)
    files: tuple[str, ...] = ()
