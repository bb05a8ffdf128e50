"""Shared fixtures: real face templates, a migrated registry on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import FACES, PG_URL, Registry, register_kiosk, settings_for
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from biometrics import face
from central_api.db import migrate
from central_api.main import create_app
from kiosk.client import KioskIdentity

# Property tests generate the same cases every run (CI must not pass or fail by chance; a
# failure found once is reproduced by the same run). Tests ask for more cases where they need.
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis_settings.load_profile("deterministic")

SERVICES = {"pcscd": "pcsc", "page": "browser", "kiosk_ui": "browser"}  # fixture -> marker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the services it needs (the postgresql half of ``db_url``, pcscd, a
    browser), so that ``make test-fast`` can leave them out."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        spec = getattr(item, "callspec", None)
        if spec is not None and spec.params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)
        for fixture, marker in SERVICES.items():
            if fixture in names:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not FACES.is_dir():
        pytest.fail(f"test photos not found at {FACES} (set RNP_FACES_DIR)")
    return FACES


@pytest.fixture(scope="session")
def photo(faces_dir: Path) -> Callable[[str], bytes]:
    """JPEG bytes of a shared photo, downscaled to at most 640 px (like a kiosk capture)."""
    cache: dict[str, bytes] = {}

    def load(name: str) -> bytes:
        if name not in cache:
            img = cv2.imread(str(faces_dir / name))
            assert img is not None, name
            scale = 640 / max(img.shape[:2])
            if scale < 1:
                img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            cache[name] = buf.tobytes()
        return cache[name]

    return load


@pytest.fixture(scope="session")
def template(photo: Callable[[str], bytes]) -> Callable[[str], np.ndarray]:
    """The real face template of a shared photo (computed once per session)."""
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            # press photos, not kiosk captures: no quality gate
            cache[name] = face.encode(face.decode_image(photo(name)), thresholds=None)
        return cache[name]

    return get


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated registry database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'central.db'}"
    else:
        url = PG_URL
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        except Exception as exc:
            pytest.fail(f"PostgreSQL at {url} unusable ({exc}); run `make test`")
        finally:
            engine.dispose()
    migrate(url)
    yield url


@pytest.fixture
def registry_factory(db_url: str) -> Iterator[Callable[..., Registry]]:
    """Start the app on the test database (settings overridable); stops them all at the end."""
    kiosk = KioskIdentity.generate("KIOSK-FES-01")
    register_kiosk(db_url, kiosk)
    started: list[TestClient] = []

    def start(**overrides: object) -> Registry:
        client = TestClient(create_app(settings_for(db_url, **overrides)))
        client.__enter__()
        started.append(client)
        return Registry(client, kiosk)

    yield start
    for c in reversed(started):
        c.__exit__(None, None, None)


@pytest.fixture
def registry(registry_factory: Callable[..., Registry]) -> Registry:
    return registry_factory()


@pytest.fixture(scope="session")
def pcscd() -> Iterator[None]:
    """The real PC/SC daemon with vsmartcard's vpcd driver, in the foreground (no systemd).
    Reuses one that already runs with the vpcd driver loaded."""
    from devices.simulation import emrtd

    try:
        proc = emrtd.start_pcscd()
    except emrtd.PcscdUnavailable as exc:
        pytest.fail(f"{exc}; run `make test` (installs them)")
    yield
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)
