"""Transcript files read and parsed in worker processes, handed back in their order.

Parsing is pure Python (webvtt-py's work per cue is most of a cold ingest's planning): in
the run's own process it shares one interpreter lock with chunking, the Milvus client and
Milvus Lite's in-process server. Workers parse on the other cores instead.

A worker is `python -m corpusflow.sources.reader`, not a multiprocessing child, so the
user's main script is never imported again. It reads requests from its stdin and answers on
its stdout, one pickled message each, first in first out: the parent gives the n-th file
to worker n % W and reads the n-th answer from that worker, so the order needs no
bookkeeping. A worker whose parent is gone (even by kill -9) reads end-of-file and exits.
Only files this process found are sent, and only answers from its own workers are read.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from corpusflow.ids import project_root, set_project_root

MIN_FILES = 32  # fewer files to read: reading them here costs less than starting a worker
_SIZE = struct.Struct("!Q")
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """One worker per core, at most MAX_DEFAULT_WORKERS. The run's own process needs a core
    too, but mostly waits on its interpreter lock: on 2 cores, 2 workers made an OpenAI-
    endpoint ingest of 175 transcripts 3.2-3.8 s where 1 made it 4.1-4.2 s (0: 4.1-5.8 s)."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def _send(stream: IO[bytes], message: Any) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_SIZE.pack(len(body)) + body)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_SIZE.size)
    if len(head) < _SIZE.size:
        raise EOFError
    size = _SIZE.unpack(head)[0]
    body = stream.read(size)
    if len(body) < size:  # the worker died while writing
        raise EOFError
    return pickle.loads(body)


class WorkerGone(RuntimeError):
    """A parse worker ended before answering (killed, or out of memory)."""


_UNREAD = object()


class _Worker:
    """One worker process and the files it was given, answers not yet read, in order."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corpusflow.sources.reader"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.waiting: deque[Pending] = deque()

    def give(self, path: Path, boundary: Path | None) -> Pending:
        try:
            _send(self.proc.stdin, (str(path), _str(boundary), _str(project_root())))  # type: ignore[arg-type]
        except OSError:
            raise WorkerGone("a parse worker ended before it was given a file") from None
        pending = Pending(self)
        self.waiting.append(pending)
        return pending

    def read_until(self, pending: Pending) -> None:
        """Read answers in order until `pending`'s (those before it are kept on theirs)."""
        while pending.answer is _UNREAD:
            try:
                answer = _receive(self.proc.stdout)  # type: ignore[arg-type]
            except (EOFError, OSError):
                code = self.proc.poll()
                raise WorkerGone(f"a parse worker ended before answering (exit {code})") from None
            self.waiting.popleft().answer = answer  # a skipped file's goes with its Pending

    def close(self) -> None:
        """Answers still unread are not needed (the files were skipped after all), and a
        worker writes nothing else: end it now rather than wait for it to finish parsing."""
        for stream in (self.proc.stdout, self.proc.stdin):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        self.proc.kill()
        self.proc.wait()


class Pending:
    """One file given to a worker; `result()` is its `read_outcome`. A Pending nobody
    holds any more (its file was skipped after all) is dropped with its answer."""

    def __init__(self, worker: _Worker):
        self.worker, self.answer = worker, _UNREAD

    def result(self) -> Any:
        self.worker.read_until(self)
        return self.answer


class Reader:
    """Up to `workers` worker processes, started as files are handed out."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: list[_Worker] = []
        self._next = 0

    def submit(self, path: Path, boundary: Path | None) -> Pending:
        if len(self._pool) < self.workers:
            self._pool.append(_Worker())
        worker = self._pool[self._next % len(self._pool)]
        self._next += 1
        return worker.give(path, boundary)

    def close(self) -> None:
        """End every worker and wait for it."""
        for worker in self._pool:
            worker.close()
        self._pool.clear()


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def serve(read: Callable[[Path, Path | None], Any]) -> None:
    """The worker's loop: answer each request with `read(path, boundary)` until EOF."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    while True:
        try:
            path, boundary, root = _receive(stdin)
        except EOFError:
            return
        set_project_root(None if root is None else Path(root))  # the ids the parent makes
        outcome = read(Path(path), None if boundary is None else Path(boundary))
        try:
            _send(stdout, outcome)
        except BrokenPipeError:
            return


if __name__ == "__main__":
    from corpusflow.sources.transcripts import read_outcome

    serve(read_outcome)
