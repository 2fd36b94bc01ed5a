"""A fake Hugging Face Hub behind huggingface_hub's own HTTP client.

`FakeHub.install()` points `huggingface_hub.set_client_factory` at an ``httpx2.Client`` whose
transport is this object, keeping huggingface_hub's real request hook, so every call goes through
the library's real request path (create-repo, preupload, LFS batch + upload, commit) with no
network. It records every request and the files of every commit, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field

import httpx2
import yaml
from huggingface_hub.utils import _http

LFS_HOST = "https://fake-lfs.test"


TOKEN = "hf_FakeSecretToken0123456789abcdefXYZ"  # the fake Hub's one valid token


@dataclass
class FakeHub:
    token: str
    user: str = "fake-user"
    lfs_suffixes: tuple[str, ...] = (".safetensors",)
    fail_commit_with_echo: bool = False  # answer the commit with a 500 echoing the auth header
    requests: list[tuple[str, str]] = field(default_factory=list)
    repos: dict[str, dict] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    validated_cards: list[str] = field(default_factory=list)
    telemetry: list[str] = field(default_factory=list)

    # -- plumbing ---------------------------------------------------------------------------
    def install(self) -> None:
        def factory() -> httpx2.Client:
            return httpx2.Client(
                transport=httpx2.MockTransport(self.handle),
                event_hooks={"request": [_http.hf_request_event_hook]},
                follow_redirects=True,
            )

        _http.set_client_factory(factory)

    @staticmethod
    def uninstall() -> None:
        _http.set_client_factory(_http.default_client_factory)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        if request.url.path == "/api/agent-harnesses":  # huggingface_hub's own telemetry
            self.telemetry.append(url)
            return _error(404, "no telemetry in the fake hub")
        self.requests.append((request.method, url.split("?")[0]))
        self.headers_seen.append(dict(request.headers))
        if url.startswith(LFS_HOST):
            return self._lfs_put(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "Invalid credentials in Authorization header")
        path = request.url.path
        if request.method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(request.content))
        if request.method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(request.content)["content"])
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
            return self._preupload(m.group(1), json.loads(request.content))
        if m := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
            return self._lfs_batch(m.group(1), json.loads(request.content))
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
            return self._commit(m.group(1), m.group(2), request)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
            return self._repo_info(m.group(1))
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
            return self._tree(m.group(1))
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(m.group(1), m.group(3), request.method)
        return _error(404, f"fake hub has no route {request.method} {path}")

    # -- routes -----------------------------------------------------------------------------
    def _create_repo(self, body: dict) -> httpx2.Response:
        repo_id = f"{body.get('organization') or self.user}/{body['name']}"
        if body.get("type", "model") != "model":
            return _error(400, "only model repos in the fake hub")
        if repo_id in self.repos:
            return _error(409, "You already created this model repo", url=repo_id)
        self.repos[repo_id] = {"visibility": body.get("visibility")}
        return httpx2.Response(200, json={"url": f"https://huggingface.co/{repo_id}"})

    def _validate_yaml(self, content: str) -> httpx2.Response:
        """The checks the Hub makes on a model card header that our cards rely on."""
        match = re.match(r"---\n(.*?)\n---\n", content, re.DOTALL)
        errors = [] if match else ["README.md has no YAML metadata block"]
        meta = yaml.safe_load(match.group(1)) if match else {}
        if not isinstance(meta, dict):
            errors.append("metadata must be a mapping")
            meta = {}
        for key in ("tags", "datasets", "metrics"):
            if key in meta and not isinstance(meta[key], list):
                errors.append(f'"{key}" must be an array')
        for entry in meta.get("model-index", []):
            for result in entry.get("results", []):
                if "type" not in result.get("task", {}):
                    errors.append('"model-index[].results[].task.type" is required')
                if not {"type", "name"} <= set(result.get("dataset", {})):
                    errors.append('"model-index[].results[].dataset" needs type and name')
                for metric in result.get("metrics", []):
                    if not {"type", "value"} <= set(metric):
                        errors.append('"metrics[]" need type and value')
        self.validated_cards.append(content)
        status = 400 if errors else 200
        return httpx2.Response(status, json={"errors": [{"message": e} for e in errors]})

    def _preupload(self, repo_id: str, body: dict) -> httpx2.Response:
        if repo_id not in self.repos:
            return _error(404, f"Repository {repo_id} not found")
        files = [
            {
                "path": f["path"],
                "uploadMode": "lfs" if f["path"].endswith(self.lfs_suffixes) else "regular",
                "shouldIgnore": False,
            }
            for f in body["files"]
        ]
        return httpx2.Response(200, json={"files": files, "commitOid": "0" * 40})

    def _lfs_batch(self, repo_id: str, body: dict) -> httpx2.Response:
        objects = [
            {
                "oid": o["oid"],
                "size": o["size"],
                "authenticated": True,
                "actions": {"upload": {"href": f"{LFS_HOST}/{repo_id}/{o['oid']}"}},
            }
            for o in body["objects"]
        ]
        return httpx2.Response(200, json={"transfer": "basic", "objects": objects})

    def _lfs_put(self, request: httpx2.Request) -> httpx2.Response:
        oid = request.url.path.rsplit("/", 1)[-1]
        data = request.read()
        if hashlib.sha256(data).hexdigest() != oid:
            return _error(400, "sha256 mismatch")
        self.lfs_objects[oid] = data
        return httpx2.Response(200)

    def _commit(self, repo_id: str, revision: str, request: httpx2.Request) -> httpx2.Response:
        if self.fail_commit_with_echo:
            return _error(500, f"proxy error for {request.headers.get('authorization')}")
        lines = [json.loads(line) for line in request.read().decode().splitlines() if line]
        header = lines[0]["value"]
        files: dict[str, bytes] = {}
        lfs_paths = set()
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return _error(422, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = self.lfs_objects[value["oid"]]
                lfs_paths.add(value["path"])
            else:
                return _error(400, f"unexpected commit operation {line['key']}")
        commit = {"repo_id": repo_id, "revision": revision, "summary": header["summary"]}
        commit["files"] = files
        self.commits.append(commit)
        oid = hashlib.sha1(json.dumps(sorted(files)).encode()).hexdigest()
        self.repos[repo_id].update(files=files, sha=oid, lfs_paths=lfs_paths)
        return httpx2.Response(
            200,
            json={
                "commitUrl": f"https://huggingface.co/{repo_id}/commit/{oid}",
                "commitOid": oid,
                "pullRequestUrl": None,
            },
        )

    # -- downloads --------------------------------------------------------------------------
    def _repo_info(self, repo_id: str) -> httpx2.Response:
        repo = self.repos.get(repo_id)
        if repo is None or "sha" not in repo:
            return _error(404, "Repository not found", code="RepoNotFound")
        siblings = [{"rfilename": name} for name in sorted(repo["files"])]
        return httpx2.Response(200, json={"id": repo_id, "sha": repo["sha"], "siblings": siblings})

    def _tree(self, repo_id: str) -> httpx2.Response:
        repo = self.repos.get(repo_id)
        if repo is None or "sha" not in repo:
            return _error(404, "Repository not found", code="RepoNotFound")
        entries = []
        for name, data in sorted(repo["files"].items()):
            entry = {"type": "file", "path": name, "size": len(data), "oid": _git_blob_id(data)}
            if name in repo["lfs_paths"]:
                sha = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return httpx2.Response(200, json=entries)

    def _resolve(self, repo_id: str, filename: str, method: str) -> httpx2.Response:
        repo = self.repos.get(repo_id)
        if repo is None or "sha" not in repo:
            return _error(404, "Repository not found", code="RepoNotFound")
        if filename not in repo["files"]:
            return _error(404, f"{filename} does not exist", code="EntryNotFound")
        data = repo["files"][filename]
        lfs = filename in repo["lfs_paths"]
        headers = {
            "X-Repo-Commit": repo["sha"],
            "ETag": f'"{hashlib.sha256(data).hexdigest() if lfs else _git_blob_id(data)}"',
            "Content-Length": str(len(data)),
        }
        return httpx2.Response(200, headers=headers, content=b"" if method == "HEAD" else data)


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _error(status: int, message: str, url: str | None = None, code: str = "") -> httpx2.Response:
    body = {"error": message}
    if url:
        body["url"] = f"https://huggingface.co/{url}"
    headers = {"x-error-message": message}
    if code:
        headers["x-error-code"] = code
    return httpx2.Response(status, json=body, headers=headers)
