"""A small Label Studio REST client: the few endpoints push and pull need.

Authentication follows the SDK's convention: ``LABEL_STUDIO_URL`` and
``LABEL_STUDIO_API_KEY``. A legacy token is sent as ``Authorization: Token
...``; a personal access token (a JWT refresh token) is first exchanged at
``/api/token/refresh`` for an access token sent as ``Bearer``. Every way the
server can be unreachable or refuse us becomes one line: no server at the
URL and a rejected token are BadInput (exit 2, the user's to fix); other
HTTP errors are Failure (exit 1).
"""

from __future__ import annotations

import os
from typing import Any

from atool.core.errors import BadInput, Failure, MissingDependency

URL_ENV = "LABEL_STUDIO_URL"
KEY_ENV = "LABEL_STUDIO_API_KEY"
_TIMEOUT = 60.0
_PAGE = 500


def _requests() -> Any:
    try:
        import requests
    except ImportError:  # pragma: no cover - requests ships with atool's dependencies
        raise MissingDependency("atool labelstudio needs the 'requests' package: pip install requests") from None
    return requests


def _looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


class LabelStudioClient:
    """Talks to one Label Studio server as one user."""

    def __init__(self, url: str, token: str, timeout: float = _TIMEOUT):
        if not url.startswith(("http://", "https://")):
            raise BadInput(f"{URL_ENV}={url!r} is not an http(s) URL; set it to the server, e.g. http://localhost:8080")
        if not token:
            raise BadInput(f"{KEY_ENV} is empty; set it to your Label Studio access token (Account & Settings)")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = _requests().Session()
        if _looks_like_jwt(token):
            access = self._call("POST", "/api/token/refresh", json={"refresh": token}, auth=False)["access"]
            self._session.headers["Authorization"] = f"Bearer {access}"
        else:
            self._session.headers["Authorization"] = f"Token {token}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "LabelStudioClient":
        env = os.environ if environ is None else environ
        missing = [k for k in (URL_ENV, KEY_ENV) if not env.get(k)]
        if missing:
            raise BadInput(f"set {' and '.join(missing)} to your Label Studio server's URL and access token")
        return cls(env[URL_ENV], env[KEY_ENV])

    def _call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        requests = _requests()
        where = f"{self.url}{path}"
        try:
            sender = self._session if auth else requests
            resp = sender.request(method, where, timeout=self.timeout, **kwargs)
        except requests.exceptions.ConnectionError:
            raise BadInput(f"no Label Studio server answers at {self.url}; start one or fix {URL_ENV}") from None
        except requests.exceptions.Timeout:
            raise Failure(f"Label Studio at {self.url} did not answer {method} {path} within {self.timeout:.0f} s") from None
        if resp.status_code in (401, 403) or (not auth and resp.status_code == 400 and "token" in path):
            raise BadInput(
                f"Label Studio at {self.url} refused the token in {KEY_ENV} (HTTP {resp.status_code} on {path}); "
                "copy a valid one from Account & Settings"
            )
        if resp.status_code >= 400:
            detail = " ".join(resp.text.split())[:300]
            raise Failure(f"Label Studio {method} {path} failed with HTTP {resp.status_code}: {detail}")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise Failure(f"Label Studio {method} {path} answered HTTP {resp.status_code} with a body that is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self._call("PATCH", path, json=body)

    def _pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list endpoint (a plain list is returned as it is)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            got = self.get(path, page=page, page_size=_PAGE, **params)
            if isinstance(got, list):
                return got
            items = got.get("results", got.get("tasks", [])) if isinstance(got, dict) else []
            out.extend(items)
            total = got.get("count", got.get("total")) if isinstance(got, dict) else None
            if not items or total is None or len(out) >= total:
                return out
            page += 1

    # -- the endpoints push and pull use

    def projects_titled(self, title: str) -> list[dict[str, Any]]:
        return [p for p in self._pages("/api/projects") if p.get("title") == title]

    def project(self, project_id: int) -> dict[str, Any]:
        return self.get(f"/api/projects/{project_id}")

    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        return self.post("/api/projects", {"title": title, "label_config": label_config})

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with its data (no annotations)."""
        return self._pages("/api/tasks", project=project_id, fields="all")

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        return self.post(f"/api/projects/{project_id}/import?commit_to_project=true", tasks)

    def local_storages(self, project_id: int) -> list[dict[str, Any]]:
        got = self.get("/api/storages/localfiles", project=project_id)
        return got if isinstance(got, list) else []

    def create_local_storage(self, project_id: int, path: str, title: str) -> dict[str, Any]:
        # Never synced: syncing would import every image under `path` as a task of its own.
        return self.post(
            "/api/storages/localfiles",
            {"project": project_id, "path": path, "title": title, "use_blob_urls": True, "regex_filter": ""},
        )

    def export(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations, as Label Studio's JSON export gives them."""
        got = self.get(f"/api/projects/{project_id}/export", exportType="JSON", download_all_tasks="true")
        if not isinstance(got, list):
            raise Failure(f"Label Studio's export of project {project_id} is not a list of tasks")
        return got
