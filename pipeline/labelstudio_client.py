"""The few Label Studio REST calls review push/pull need (plain HTTP: the SDK's numpy cap clashes with ours; the
SDK's prediction validator runs in the server's venv instead, see `validate_predictions`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import requests

from pipeline.labelstudio_service import TOKEN_ENV, ls_venv

VALIDATOR = Path(__file__).resolve().parents[1] / "scripts" / "ls_validate.py"


class ReviewError(RuntimeError):
    """Label Studio is unreachable, refused the token or the request: nothing further was written."""


def _filters(*items: dict) -> str:
    return json.dumps({"filters": {"conjunction": "and", "items": list(items)}})


class LabelStudio:
    def __init__(self, url: str, token: str, timeout: float = 60):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kw):
        try:
            r = self.session.request(method, f"{self.url}/api/{path}", timeout=self.timeout, **kw)
        except requests.ConnectionError as e:
            raise ReviewError(f"Label Studio at {self.url} is not reachable ({type(e).__name__}); start it with "
                              f"`vla-data review up` and run this again") from None
        except requests.Timeout:
            raise ReviewError(f"Label Studio at {self.url} did not answer {method} /api/{path} in "
                              f"{self.timeout:.0f} s") from None
        if r.status_code in (401, 403):
            raise ReviewError(f"Label Studio refused the API token (HTTP {r.status_code}): set ${TOKEN_ENV} to the "
                              f"admin's token (`vla-data review up` writes it to WORK/labelstudio/token)")
        if r.status_code >= 400:
            raise ReviewError(f"{method} /api/{path}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def check(self) -> dict:
        return self.call("GET", "current-user/whoami")

    def project(self, title: str, label_config: str | None = None) -> int:
        """The project with exactly this title; created with `label_config` if missing and a config is given."""
        found = self.call("GET", "projects/", params={"title": title, "page_size": 1000})
        for p in found.get("results", found) if isinstance(found, dict) else found:
            if p["title"] == title:
                return p["id"]
        if label_config is None:
            raise ReviewError(f"Label Studio at {self.url} has no project {title!r}: run `vla-data review push` first")
        pid = self.call("POST", "projects/", json={"title": title, "label_config": label_config,
                                                   "show_collab_predictions": True})["id"]
        self.call("POST", f"projects/{pid}/validate/", json={"label_config": label_config})
        return pid

    def local_storage(self, project: int, path: Path) -> None:
        """Label Studio serves a project's local files only under one of its local storages."""
        existing = self.call("GET", "storages/localfiles/", params={"project": project})
        if not any(Path(s["path"]) == path for s in existing):
            self.call("POST", "storages/localfiles/", json={"project": project, "path": str(path), "title": path.name,
                                                            "use_blob_urls": True, "regex_filter": r".*\.mp4"})

    def tasks(self, project: int, *filters: dict, fields: str = "all") -> list[dict]:
        out, page = [], 1
        while True:
            r = self.call("GET", "tasks/", params={"project": project, "query": _filters(*filters), "fields": fields,
                                                   "page": page, "page_size": 100})
            out += r["tasks"]
            if len(out) >= r["total"] or not r["tasks"]:
                return out
            page += 1

    def task_of(self, project: int, recording_id: str) -> dict | None:
        found = self.tasks(project, {"filter": "filter:tasks:data.recording_id", "operator": "equal",
                                     "type": "String", "value": recording_id})
        return found[0] if found else None

    def import_task(self, project: int, data: dict, prediction: dict) -> int:
        r = self.call("POST", f"projects/{project}/import", params={"return_task_ids": "true"},
                      json=[{"data": data, "predictions": [prediction]}])
        return r["task_ids"][0]

    def predictions(self, task: int) -> list[dict]:
        return self.call("GET", "predictions/", params={"task": task})

    def add_prediction(self, task: int, prediction: dict) -> None:
        self.call("POST", "predictions/", json={"task": task, **prediction})

    def annotated_since(self, project: int, since: str | None) -> list[int]:
        """Ids of tasks with at least one annotation, updated after `since` (ISO time) if given."""
        items = [{"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}]
        if since:
            items.append({"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime",
                          "value": since})
        return [t["id"] for t in self.tasks(project, *items, fields="task_only")]

    def export(self, project: int, task_ids: list[int]) -> list[dict]:
        """Full JSON export (not JSON_MIN, which loses the pairing of spans and their per-region texts)."""
        return [t for i in range(0, len(task_ids), 200) for t in self.call(
            "GET", f"projects/{project}/export",
            params={"exportType": "JSON", "download_all_tasks": "false", "ids[]": task_ids[i:i + 200]})]

    def users(self) -> dict[int, str]:
        return {u["id"]: u["email"] for u in self.call("GET", "users/")}


def validate_predictions(label_config: str, predictions: list[dict]) -> list[list[str]]:
    """Problems per prediction, from label-studio-sdk's LabelInterface.validate_prediction (the server itself
    stores any prediction unchecked), run in the Label Studio venv where the SDK lives."""
    r = subprocess.run([str(ls_venv() / "bin" / "python"), str(VALIDATOR)], check=True, text=True,
                       capture_output=True, input=json.dumps({"config": label_config, "predictions": predictions}))
    return json.loads(r.stdout)
