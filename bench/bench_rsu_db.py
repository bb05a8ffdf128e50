"""Benchmark of the RSU's bulk re-score job in a real database: ``central-api rsu-rescore`` in
its own process over N synthetic households (default 1,000,000), time, households/s and the
job process's peak RSS; the same households scored in memory (``points_many``) in the same run
as the floor the job is compared with.

    .venv/bin/python bench/bench_rsu_db.py [households] [--database-url URL]

Without ``--database-url``, a SQLite file in a temporary folder. The households are
``synthetic_declarations`` (invented distributions, documented in ``synthetic_households``:
ILLUSTRATIVE, not census data), each with its declarant in the population register, its
declaration encrypted as the registry keeps it, and its utility records as partner entries
(as of a month ago). Two jobs run one after the other: the first decides every household
(no decision before: what a new model's roll-out costs), the second under a hypothetical
revised direct-aid threshold (10.0 from 2026; every household has a decision to compare
with, and those whose eligibility changes get a notice). The database is filled directly
(bulk inserts), not through ``declare``: what is measured is the job.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from central_api.crypto import FieldCipher  # noqa: E402
from central_api.db import make_engine, migrate  # noqa: E402
from central_api.identity.models import Person  # noqa: E402
from central_api.rsu import scoring, service  # noqa: E402
from central_api.rsu.models import DeclarationVersion, Household, PartnerEntry  # noqa: E402
from central_api.rsu.schemas import HouseholdDeclaration, MemberIn  # noqa: E402

CHUNK = 20_000
KEY = base64.b64encode(b"B" * 32).decode()
MODEL = "pmt-illustrative-2026.1"


def populate(url: str, n: int, cipher: FieldCipher) -> float:
    """Insert ``n`` households; seconds taken."""
    started = time.perf_counter()
    engine = make_engine(url)
    now = datetime.now(UTC)
    as_of = (now - timedelta(days=30)).date()
    done = 0
    while done < n:
        size = min(CHUNK, n - done)
        batch = scoring.synthetic_declarations(size, seed=done + 1)
        persons, households, versions, partners = [], [], [], []
        for k, (decl, partner) in enumerate(batch):
            i = done + k + 1
            reference = service.new_reference()
            persons.append({"id": i, "idcs": f"{9_000_000_000 + i}", "created_at": now})
            households.append(
                {"id": i, "reference": reference, "current_version": 1, "created_at": now}
            )
            members = tuple(
                MemberIn(
                    idcs=f"{9_000_000_000 + i}" if j == 0 else f"{1_000_000_000 + i * 40 + j}",
                    age=m.age,
                    relation=m.relation,
                )
                for j, m in enumerate(decl.members)
            )
            full = HouseholdDeclaration.model_validate(
                {**decl.model_dump(exclude={"members"}), "members": members}
            )
            versions.append(
                {
                    "household_id": i,
                    "version": 1,
                    "declarant_person_id": i,
                    "content": cipher.encrypt(
                        full.model_dump_json().encode(),
                        service._declaration_context(reference, 1),
                    ),
                    "declared_by": "bench",
                    "declared_at": now,
                }
            )
            for kind in scoring.PARTNER_KINDS:
                record = getattr(partner, kind.value) if partner is not None else None
                if record is None:
                    continue
                external = f"{i}-{kind.value}"
                partners.append(
                    {
                        "feed": "bench",
                        "external_id": external,
                        "source": record.source,
                        "kind": kind.value,
                        "key_kind": "household",
                        "key": reference,
                        "household_id": i,
                        "amount": cipher.encrypt(
                            repr(record.amount).encode(),
                            service._partner_context("bench", external),
                        ),
                        "as_of": as_of,
                        "received_at": now,
                    }
                )
        with engine.begin() as conn:
            conn.execute(insert(Person), persons)
            conn.execute(insert(Household), households)
            conn.execute(insert(DeclarationVersion), versions)
            if partners:
                conn.execute(insert(PartnerEntry), partners)
        done += size
        print(f"\rpopulating: {done:,}/{n:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def job(url: str, thresholds: Path | None, batch: int) -> dict[str, object]:
    """Run ``central-api rsu-rescore`` in its own process: its summary, wall time and the
    process's peak RSS."""
    env = {**os.environ, "CENTRAL_DATABASE_URL": url, "CENTRAL_DATA_KEY": KEY}
    cmd = [str(ROOT / ".venv/bin/central-api"), "rsu-rescore", "--model", MODEL]
    cmd += ["--batch", str(batch)]
    if thresholds is not None:
        cmd += ["--thresholds", str(thresholds)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if r.returncode != 0:
        raise SystemExit(f"rsu-rescore failed: {r.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    return {
        "seconds": round(seconds, 1),
        "households_per_s": round(summary["processed"] / seconds),
        "peak_rss_mib": round(max(peak, before) / 1024),  # the largest child so far
        "changed": summary["changed"],
        "became_eligible": summary["became_eligible"],
        "lost_eligibility": summary["lost_eligibility"],
        "threshold_versions": summary["threshold_versions"],
    }


def in_memory(n: int) -> float:
    """Seconds to score the same households in memory, vectorised (the floor)."""
    model = scoring.load_model(MODEL)
    table = scoring.synthetic_households(n, seed=1)
    started = time.perf_counter()
    scoring.points_many(model, table)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("households", nargs="?", type=int, default=1_000_000)
    p.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    p.add_argument("--batch", type=int, default=service.DEFAULT_BATCH)
    args = p.parse_args()
    n = args.households
    cipher = FieldCipher(base64.b64decode(KEY))
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        migrate(url)
        fill = populate(url, n, cipher)
        revised = service.bundled_thresholds_data()
        revised["thresholds"].append(
            {
                "programme": "asd",
                "version": "asd-bench-hypothetical",
                "value": 10.0,
                "effective_from": "2026-01-01",
                "source": "hypothetical revision (bench)",
            }
        )
        path = Path(tmp) / "revised.json"
        path.write_text(json.dumps(revised))
        first = job(url, None, args.batch)
        second = job(url, path, args.batch)
        floor = in_memory(n)
    db = "postgresql" if url.startswith("postgresql") else "sqlite"
    out = {
        "households": n,
        "database": db,
        "batch": args.batch,
        "populate_seconds": round(fill, 1),
        "first_job": first,
        "revised_threshold_job": second,
        "in_memory_vectorised_seconds": round(floor, 3),
        "job_vs_in_memory": round(float(first["seconds"]) / max(floor, 1e-9)),  # type: ignore[arg-type]
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
