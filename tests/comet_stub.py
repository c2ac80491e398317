"""A local stand-in for the Comet REST API, spoken to by the real `comet_ml` SDK.

Only the Comet cloud is replaced: the SDK under test is the real one, pointed here with
`COMET_URL_OVERRIDE=http://127.0.0.1:PORT/clientlib/`. The endpoints below are the ones
comet-ml 3.58.8 actually calls for our flows (found by running it against a catch-all that
records unknown requests): experiment handshake and status, parameters/metrics/others/assets,
artifact upsert, artifact asset upload, state and aliases, artifact version lookup (which
records the consumer), file listing and download, and the offline-archive upload path.

Every request is recorded (method, path, query, headers, decoded body) so tests can assert
what reached the "cloud" and that no secret leaked outside the SDK's own auth fields.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

BACKEND_VERSION = "3.40.0"
ARTIFACT_NOT_FOUND = 624523  # sdk_error_code the SDK maps to ArtifactNotFound
ARTIFACT_NOT_FINAL = 90403  # ... and to ArtifactNotFinalException
NO_WRITE_ACCESS = 90219  # ... and to ExperimentNotFound on re-attach


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes  # decompressed

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class StubState:
    requests: list[Recorded] = field(default_factory=list)
    unknown: list[Recorded] = field(default_factory=list)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset id -> info + data
    artifacts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # version id -> version
    consumers: list[dict[str, str]] = field(default_factory=list)
    reject_artifacts: bool = False  # answer artifact upserts with an error (a failing backend)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def experiment(self, key: str) -> dict[str, Any]:
        return self.experiments.setdefault(
            key,
            {
                "key": key,
                "project": None,
                "workspace": "stub-ws",
                "offline": False,
                "params": {},
                "metrics": [],
                "others": {},
                "tags": [],
                "status": [],
            },
        )


def _decode(body: bytes, headers: dict[str, str]) -> bytes:
    if headers.get("content-encoding") == "gzip" or body[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(body)
        except OSError:
            return body
    return body


def _multipart_file(body: bytes, content_type: str) -> tuple[bytes, dict[str, str]]:
    """The uploaded file's bytes and any other form fields of a multipart body."""
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    data, fields = b"", {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            data = payload
        elif name:
            fields[name] = payload.decode("utf-8", "replace")
    return data, fields


def _error(status: int, msg: str, code: int | None = None) -> JSONResponse:
    body: dict[str, Any] = {"msg": msg, "code": status}
    if code is not None:
        body["sdk_error_code"] = code
    return JSONResponse(body, status_code=status)


def make_app(state: StubState) -> FastAPI:
    """The FastAPI app; `state` is shared with the test."""
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        rec = Recorded(
            request.method,
            request.url.path,
            dict(request.query_params),
            headers,
            _decode(raw, headers),
        )
        request.state.rec = rec
        with state.lock:
            state.requests.append(rec)
        return await call_next(request)

    def body_json(request: Request) -> dict[str, Any]:
        rec: Recorded = request.state.rec
        return json.loads(rec.body or b"{}")

    # --- handshake, health, status ---------------------------------------------------
    def handshake(key: str, exp: dict[str, Any]) -> dict[str, Any]:
        return {
            "runId": f"run-{key[:8]}",
            "project_id": f"proj-{exp['project'] or 'general'}",
            "lastOffset": 0,
            "name": f"exp-{key[:6]}",
            "featureToggles": [],
            "s3DirectAccessEnabled": False,
        }

    @app.get("/clientlib/isAlive/ver")
    def backend_version() -> dict[str, str]:
        return {"version": BACKEND_VERSION}

    @app.get("/clientlib/health/ping")
    def ping() -> dict[str, str]:
        return {"msg": "pong"}

    @app.post("/clientlib/logger/add/run")
    def add_run(request: Request) -> dict[str, Any]:
        b = body_json(request)
        key = b["experimentKey"]
        with state.lock:
            exp = state.experiment(key)
            exp.update(project=b.get("projectName"), offline=bool(b.get("offline")))
            exp["workspace"] = b.get("teamName") or "stub-ws"
        return handshake(key, exp)

    @app.post("/clientlib/logger/get/run")
    def get_run(request: Request) -> Any:
        """Re-attach to an existing experiment (ExistingExperiment, uploads of archives)."""
        b = body_json(request)
        key = b["previousExperiment"]
        with state.lock:
            exp = state.experiments.get(key)
        if exp is None:
            return _error(400, "experiment not found", NO_WRITE_ACCESS)
        return handshake(key, exp)

    @app.post("/clientlib/asset/3d-limits")
    def limits() -> dict[str, Any]:
        return {}

    @app.post("/clientlib/status-report/update")
    def status_update() -> dict[str, Any]:
        return {
            "is_alive_beat_duration_millis": 60_000,
            "gpu_monitor_interval_millis": 60_000,
            "cpu_monitor_interval_millis": 60_000,
            "pending_rpcs": False,
        }

    @app.post("/clientlib/status-report/offline-metadata")
    def offline_times(request: Request) -> dict[str, Any]:
        b = body_json(request)
        with state.lock:
            state.experiment(b.get("experimentKey", "?"))["offline_times"] = b
        return {}

    @app.post("/clientlib/notification/experiment")
    def notification() -> dict[str, Any]:
        return {}

    @app.post("/api/rest/v2/write/experiment/update-status")
    def update_status(request: Request) -> dict[str, Any]:
        b = body_json(request)
        with state.lock:
            state.experiment(b["experimentKey"])["status"].append(b)
        return {}

    @app.post("/api/rest/v2/write/experiment/set-start-end-time")
    def start_end() -> dict[str, Any]:
        return {}

    @app.get("/api/rest/v2/experiment/metadata")
    def metadata(experimentKey: str) -> Any:
        exp = state.experiments.get(experimentKey)
        if exp is None:
            return _error(400, "no such experiment")
        return {
            "experimentKey": experimentKey,
            "experimentName": f"exp-{experimentKey[:6]}",
            "projectName": exp["project"],
            "projectId": f"proj-{exp['project']}",
            "workspaceName": exp["workspace"],
            "running": False,
            "archived": False,
            "throttle": False,
        }

    # --- experiment data -------------------------------------------------------------
    @app.post("/clientlib/batch/logger/experiment/parameter")
    def params_batch(request: Request) -> dict[str, Any]:
        b = body_json(request)
        with state.lock:
            exp = state.experiment(b["experimentKey"])
            for v in b.get("values", []):
                exp["params"][v["parameterName"]] = v["parameterValue"]
        return {}

    @app.post("/clientlib/batch/logger/experiment/metric")
    def metrics_batch(request: Request) -> dict[str, Any]:
        b = body_json(request)
        with state.lock:
            exp = state.experiment(b["experimentKey"])
            for v in b.get("values", []):
                exp["metrics"].append(v)
        return {}

    @app.post("/api/rest/v2/write/experiment/log-other")
    def log_other(request: Request) -> dict[str, Any]:
        b = body_json(request)
        with state.lock:
            state.experiment(b["experimentKey"])["others"][b["key"]] = b["value"]
        return {}

    @app.post("/api/rest/v2/write/experiment/html")
    def log_html(request: Request) -> dict[str, Any]:
        b = body_json(request)
        with state.lock:
            exp = state.experiment(b["experimentKey"])
            exp["html"] = b["html"] if b.get("override") else exp.get("html", "") + b["html"]
        return {}

    @app.post("/clientlib/tags/add-tags-to-experiment")
    def add_tags(request: Request) -> dict[str, Any]:
        b = body_json(request)
        with state.lock:
            state.experiment(b["experimentKey"])["tags"].extend(b.get("addedTags", []))
        return {}

    @app.get("/api/rest/v2/experiment/tags")
    def get_tags(experimentKey: str) -> dict[str, Any]:
        with state.lock:
            return {"tags": list(state.experiment(experimentKey)["tags"])}

    @app.post("/api/rest/v2/write/experiment/tags")
    def add_tags_rest(request: Request) -> dict[str, Any]:
        b = body_json(request)
        with state.lock:
            state.experiment(b["experimentKey"])["tags"].extend(b.get("addedTags", []))
        return {}

    @app.post("/clientlib/asset/upload")
    def upload(request: Request) -> Any:
        rec: Recorded = request.state.rec
        q = rec.query
        data, fields = _multipart_file(rec.body, request.headers.get("content-type", ""))
        asset_id = q.get("assetId") or uuid.uuid4().hex
        with state.lock:
            state.assets[asset_id] = {
                "assetId": asset_id,
                "experimentKey": q.get("experimentId"),
                "artifactVersionId": q.get("artifactVersionId"),
                "fileName": q.get("fileName"),
                "type": q.get("type", "asset"),
                "metadata": fields.get("metadata"),
                "data": data,
            }
            version = state.versions.get(q.get("artifactVersionId") or "")
            if version is not None:
                version["assets"].append(asset_id)
        return {"assetId": asset_id, "web": "", "api": ""}

    @app.post("/clientlib/rest/v2/write/artifact/assets/remote/batch")
    def remote_assets(request: Request) -> Any:
        """Remote artifact assets (links, nothing uploaded): kept with their version."""
        rec: Recorded = request.state.rec
        b = json.loads(rec.body or b"{}")
        with state.lock:
            for item in b.get("remoteArtifactAssetRequests", []):
                asset_id = item.get("assetId") or uuid.uuid4().hex
                state.assets[asset_id] = {
                    "assetId": asset_id,
                    "experimentKey": rec.query.get("experimentKey"),
                    "artifactVersionId": item.get("artifactVersionId"),
                    "fileName": item.get("fileName"),
                    "type": item.get("type", "asset"),
                    "metadata": item.get("metadata"),
                    "link": item.get("link"),
                    "remote": True,
                    "data": b"",
                }
                version = state.versions.get(item.get("artifactVersionId") or "")
                if version is not None:
                    version["assets"].append(asset_id)
        return {}

    # --- artifacts -------------------------------------------------------------------
    def version_view(v: dict[str, Any]) -> dict[str, Any]:
        art = state.artifacts[(v["workspace"], v["name"])]
        size = sum(len(state.assets[a]["data"]) for a in v["assets"] if a in state.assets)
        return {
            "artifactVersionId": v["id"],
            "artifactVersion": v["version"],
            "metadata": v["metadata"],
            "alias": list(v["aliases"]),
            "tags": list(v["tags"]),
            "state": v["state"],
            "sizeInBytes": size,
            "experimentKey": v["experimentKey"],
            "artifact": {
                "artifactId": art["id"],
                "artifactName": art["name"],
                "artifactType": art["type"],
                "workspaceName": art["workspace"],
                "tags": [],
            },
        }

    def move_aliases(art: dict[str, Any], version: dict[str, Any], aliases: list[str]) -> None:
        """Aliases are unique within an artifact: setting one moves it here."""
        for vid in art["versions"]:
            other = state.versions[vid]
            if other is not version:
                other["aliases"] = [a for a in other["aliases"] if a not in aliases]
        version["aliases"] = list(dict.fromkeys(aliases))

    @app.post("/api/rest/v2/write/artifacts/upsert")
    def upsert(request: Request) -> Any:
        b = body_json(request)
        exp_key = b["experimentKey"]
        if state.reject_artifacts:
            return _error(400, "artifact storage unavailable")
        with state.lock:
            workspace = state.experiment(exp_key)["workspace"]
            key = (workspace, b["artifactName"])
            art = state.artifacts.setdefault(
                key,
                {
                    "id": uuid.uuid4().hex,
                    "name": b["artifactName"],
                    "type": b.get("artifactType"),
                    "workspace": workspace,
                    "versions": [],
                },
            )
            previous = state.versions[art["versions"][-1]]["version"] if art["versions"] else None
            number = b.get("version") or f"{len(art['versions']) + 1}.0.0"
            if any(state.versions[v]["version"] == number for v in art["versions"]):
                return _error(400, f"version {number} already exists", 624522)
            version = {
                "id": uuid.uuid4().hex,
                "name": art["name"],
                "workspace": workspace,
                "version": number,
                "metadata": b.get("versionMetadata"),
                "aliases": [],
                "tags": list(b.get("versionTags") or []),
                "state": "OPEN",
                "assets": [],
                "experimentKey": exp_key,
            }
            state.versions[version["id"]] = version
            art["versions"].append(version["id"])
            move_aliases(art, version, list(b.get("alias") or []))
        return {
            "artifactId": art["id"],
            "artifactVersionId": version["id"],
            "currentVersion": number,
            "previousVersion": previous,
        }

    @app.post("/api/rest/v2/write/artifacts/state")
    def set_state(request: Request) -> Any:
        b = body_json(request)
        with state.lock:
            version = state.versions.get(b["artifactVersionId"])
            if version is None:
                return _error(400, "no such artifact version", ARTIFACT_NOT_FOUND)
            version["state"] = b["state"]
        return {}

    @app.post("/api/rest/v2/write/artifacts/version/labels")
    def labels(request: Request) -> Any:
        b = body_json(request)
        with state.lock:
            version = state.versions.get(b["artifactVersionId"])
            if version is None:
                return _error(400, "no such artifact version", ARTIFACT_NOT_FOUND)
            art = state.artifacts[(version["workspace"], version["name"])]
            if b.get("alias") is not None:
                move_aliases(art, version, list(b["alias"]))
            if b.get("versionTags") is not None:
                version["tags"] = list(b["versionTags"])
            if b.get("versionMetadata") is not None:
                version["metadata"] = b["versionMetadata"]
        return {}

    def find_version(q: dict[str, str]) -> dict[str, Any] | None:
        if q.get("versionId"):
            return state.versions.get(q["versionId"])
        workspace = q.get("workspace")
        if not workspace and q.get("experimentKey"):
            workspace = state.experiment(q["experimentKey"])["workspace"]
        name = q.get("artifactName")
        art = None
        for (ws, n), candidate in state.artifacts.items():
            if n == name and (workspace in (None, ws)) or candidate["id"] == q.get("artifactId"):
                art = candidate
                break
        if art is None or not art["versions"]:
            return None
        versions = [state.versions[v] for v in art["versions"]]
        wanted = q.get("versionOrAlias") or q.get("version") or q.get("alias")
        if not wanted:
            return versions[-1]
        for v in versions:
            if wanted in v["aliases"] or wanted in (v["version"], v["version"].split(".")[0]):
                return v
        return None

    @app.get("/api/rest/v2/artifacts/version")
    def get_version(request: Request) -> Any:
        q: dict[str, str] = request.state.rec.query
        with state.lock:
            version = find_version(q)
            if version is None:
                return _error(400, "artifact version not found", ARTIFACT_NOT_FOUND)
            consumer = q.get("consumerExperimentKey")
            if consumer:
                if version["state"] != "CLOSED":
                    return _error(400, "artifact version is not final", ARTIFACT_NOT_FINAL)
                state.consumers.append(
                    {
                        "artifactVersionId": version["id"],
                        "name": version["name"],
                        "version": version["version"],
                        "consumerExperimentKey": consumer,
                    }
                )
            return version_view(version)

    @app.get("/api/rest/v2/artifacts/version/files")
    def get_files(request: Request) -> Any:
        q: dict[str, str] = request.state.rec.query
        with state.lock:
            version = find_version(q)
            if version is None:
                return _error(400, "artifact version not found", ARTIFACT_NOT_FOUND)
            files = []
            for asset_id in version["assets"]:
                a = state.assets[asset_id]
                files.append(
                    {
                        "assetId": asset_id,
                        "artifactVersionId": version["id"],
                        "fileName": a["fileName"],
                        "fileSize": len(a["data"]),
                        "link": a.get("link"),
                        "remote": a.get("remote", False),
                        "metadata": a["metadata"],
                        "type": a["type"],
                        "experimentKey": a["experimentKey"],
                    }
                )
        return {"files": files}

    @app.get("/api/rest/v2/experiment/asset/get-asset")
    def get_asset(assetId: str) -> Response:
        asset = state.assets.get(assetId)
        if asset is None:
            return _error(404, "asset not found")
        return Response(asset["data"], media_type="application/octet-stream")

    # --- everything else: recorded as unknown -----------------------------------------
    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown(path: str, request: Request) -> JSONResponse:
        with state.lock:
            state.unknown.append(request.state.rec)
        return _error(404, f"stub: unknown endpoint /{path}")

    return app


class CometStub:
    """The stub served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self) -> None:
        self.state = StubState()
        self.app = make_app(self.state)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        """The value for COMET_URL_OVERRIDE."""
        return f"http://127.0.0.1:{self.port}/clientlib/"

    def start(self, timeout: float = 10.0) -> CometStub:
        started = threading.Event()
        self._thread.start()
        # uvicorn sets `started` once it is serving; wait on it without sleeping blindly
        for _ in range(int(timeout * 100)):
            if self._server.started:
                started.set()
                break
            started.wait(0.01)
        if not started.is_set():
            raise RuntimeError("comet stub did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    # --- views for tests ---------------------------------------------------------------
    def artifact_versions(self, name: str) -> list[dict[str, Any]]:
        with self.state.lock:
            for (_, n), art in self.state.artifacts.items():
                if n == name:
                    return [dict(self.state.versions[v]) for v in art["versions"]]
        return []

    def asset_bytes(self, asset_id: str) -> bytes:
        return self.state.assets[asset_id]["data"]
