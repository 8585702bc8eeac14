"""`haggler bench-scale --quick`: every phase runs end to end on SQLite, the output names every
read endpoint and size, and the store holds the negotiations it was filled with."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from haggler.bench.scale import READ_ENDPOINTS
from haggler.cli.main import cli
from haggler.store import metrics, snapshots
from haggler.store.database import make_engine
from haggler.store.tables import ModelSnapshotRow, NegotiationRow


def test_a_quick_run_measures_every_read_endpoint_at_every_size(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'scale.db'}"
    figures = tmp_path / "scale.json"
    options = ["--quick", "--sizes", "200,1000", "--database-url", url, "--json", str(figures)]
    result = CliRunner().invoke(cli, ["bench-scale", *options], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    header = result.output.split("negotiations in the store")[0]
    assert "200" in header and "1,000" in header
    for endpoint in READ_ENDPOINTS:
        assert f"  {endpoint} " in result.output, endpoint
    for row in ("learner at 50%", "learner at 100%", "learner at 200%", "store size, MB"):
        assert row in result.output

    sizes = json.loads(figures.read_text())["sizes"]
    assert [size["size"] for size in sizes] == [200, 1000]
    # The first size is read before any load adds negotiations: exactly what was filled.
    assert sizes[0]["negotiations"] == 200
    assert sizes[1]["negotiations"] >= 1000
    for size in sizes:
        assert [read["path"] for read in size["reads"]] == list(READ_ENDPOINTS)
        assert all(read["errors"] == 0 for read in size["reads"]), size["reads"]
        assert [lag["level"] for lag in size["lag"]] == [0.5, 1.0, 2.0]
        assert size["turns"]["requests"] > 0 and size["store_bytes"] > 0

    # The store (kept: it was given) holds every negotiation the summary counts, and more than
    # the largest size (the loads added some after the reads). The counts of model versions kept
    # as they are published agree with the versions too (the filled history's and the learner's).
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            stored = session.scalar(select(func.count()).select_from(NegotiationRow))
            summary = metrics.summary(session=session)
            counted = snapshots.model_status_counts(session=session)
            versions = session.execute(
                select(ModelSnapshotRow.source, ModelSnapshotRow.status, func.count()).group_by(
                    ModelSnapshotRow.source, ModelSnapshotRow.status
                )
            ).all()
    finally:
        engine.dispose()
    assert summary.negotiations == stored
    assert stored is not None and stored >= 1000
    assert counted == {(source, status): count for source, status, count in versions}
