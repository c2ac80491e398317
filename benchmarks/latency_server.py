"""A local OpenAI-compatible `/v1/embeddings` server that adds a fixed latency per request.

Run as its own process (so its CPU work never shares the client's interpreter lock):

    python -m benchmarks.latency_server --latency 0.05 --dim 384

It prints one JSON line `{"url": ..., "impl": ...}` and serves on 127.0.0.1 until its stdin
closes. `--impl stub` uses the test suite's server (tests/openai_stub.py, FastAPI + uvicorn)
with a fixed `delay`; `--impl own` a minimal threaded stdlib server defined here; `auto`
(default) takes the stub when it imports, else our own. Vectors are `hash_vectors`.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks.common import REPO
from benchmarks.fake_embedder import hash_vectors


def rough_tokens(text: str) -> int:
    """A cheap token estimate for the server's limit checks (bytes / 4, rounded up)."""
    return (len(text.encode("utf-8")) + 3) // 4


def _vectors(texts: list[str], dimensions: int | None, default: int) -> list[list[float]]:
    return hash_vectors(texts, dimensions or default)


class _Handler(BaseHTTPRequestHandler):
    server_version = "corpusflow-bench"
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
    latency = 0.05
    dim = 384

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        return

    def do_POST(self) -> None:  # noqa: N802 - stdlib's name
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if not self.path.rstrip("/").endswith("/embeddings"):
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return self._send(400, {"error": {"message": "invalid JSON"}})
        raw = payload.get("input", [])
        texts = [raw] if isinstance(raw, str) else list(raw)
        if not texts or not all(isinstance(t, str) and t for t in texts):
            return self._send(400, {"error": {"message": "input must be non-empty strings"}})
        time.sleep(self.latency)
        vectors = _vectors(texts, payload.get("dimensions"), self.dim)
        data = []
        for i, vector in enumerate(vectors):
            if payload.get("encoding_format") == "base64":
                emb: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                emb = vector
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(rough_tokens(t) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send(
            200, {"object": "list", "data": data, "model": payload.get("model"), "usage": usage}
        )

    def setup(self) -> None:
        super().setup()
        # no Nagle: with delayed ACKs it adds ~40 ms to a request on loopback
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self._headers_buffer.append(b"\r\n")  # end_headers, sent with the body in one write
        self.wfile.write(b"".join(self._headers_buffer) + data)
        self._headers_buffer = []


def serve_own(latency: float, dim: int) -> tuple[str, Any]:
    """Start the stdlib server in a thread; returns (base URL, server)."""
    handler = type("Handler", (_Handler,), {"latency": latency, "dim": dim})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1", server


def _nodelay_uvicorn() -> None:
    """Set TCP_NODELAY on every connection uvicorn's h11 protocol accepts (this process only).

    Without it, keep-alive requests to the stub came back ~40 ms late (44 ms for an empty
    round trip, 3 ms with it set): the response body waited for the client's delayed ACK.
    That would bill the one-request-per-chunk loop for latency the server never added.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    original = H11Protocol.connection_made

    def connection_made(self: Any, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        original(self, transport)

    H11Protocol.connection_made = connection_made  # type: ignore[method-assign]


def serve_stub(latency: float, dim: int) -> tuple[str, Any]:
    """Start tests/openai_stub.py's server with a fixed delay; ImportError if it is absent."""
    sys.path.insert(0, str(REPO / "tests"))
    from openai_stub import OpenAIStub  # type: ignore[import-not-found]

    _nodelay_uvicorn()

    stub = OpenAIStub(
        vectors=lambda texts, d: _vectors(texts, d, dim),
        dim=dim,
        count_tokens=rough_tokens,
        delay=(latency, latency),
    )
    stub.start()
    return stub.url, stub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per request")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--impl", choices=["auto", "stub", "own"], default="auto")
    args = parser.parse_args()
    impl, reason = args.impl, ""
    if impl in ("auto", "stub"):
        try:
            url, _server = serve_stub(args.latency, args.dim)
            impl = "stub"
        except Exception as exc:  # the stub is absent or broken: say so, use ours
            if args.impl == "stub":
                raise
            impl, reason = "own", f"tests/openai_stub.py unusable: {type(exc).__name__}: {exc}"
    if impl == "own":
        url, _server = serve_own(args.latency, args.dim)
    source = "tests/openai_stub.py" if impl == "stub" else "benchmarks/latency_server.py"
    print(json.dumps({"url": url, "impl": source, "why": reason}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin (or exits)


if __name__ == "__main__":
    main()
