"""A store that cannot be reached: 503 with Retry-After and a message, not a bare 500."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from api_fixtures import OPERATOR
from haggler.api.app import create_app
from haggler.config import Settings


def test_requests_get_a_503_with_retry_after_while_the_store_is_down(
    tmp_path: Path, settings: Settings
) -> None:
    database = tmp_path / "down" / "haggler.db"
    database.parent.mkdir()
    settings = settings.model_copy(
        update={"database_url": f"sqlite:///{database}", "learner": "external"}
    )
    with TestClient(create_app(settings), headers=OPERATOR) as client:
        assert client.get("/api/summary").status_code == 200
        # The database file gone and something unopenable in its place; no pooled connection
        # left to keep reading the old file.
        client.app.state.runtime.engine.dispose()  # type: ignore[attr-defined]
        for leftover in database.parent.glob("haggler.db*"):
            leftover.unlink()
        database.mkdir()
        response = client.get("/api/summary")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "store is unavailable" in response.json()["detail"]
        # Back: the same process serves again.
        shutil.rmtree(database)
    with TestClient(create_app(settings), headers=OPERATOR) as client:
        assert client.get("/api/summary").status_code == 200
