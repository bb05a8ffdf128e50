"""Test rig for the MOSIP ABIS: a datashare server (MOSIP's referenceURL), requests as
MOSIP's registration processor writes them, persons made of real FVC2004 prints (the
commercial SDK's ISO 19794-2 records, four fingers a person from the four sets), and a real
ActiveMQ broker started from Debian's package (STOMP on a free port, KahaDB in a folder of
the test's, so messages survive a kill -9 of the broker)."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from central_api.abis import formats
from central_api.abis.service import now_text

FVC = Path(
    os.environ.get("RNP_FVC_DIR", Path(__file__).parents[2] / "shared/data/fingerprints/fvc2004")
)
SETS = ("DB1_B", "DB2_B", "DB3_B", "DB4_B")
ACTIVEMQ_HOME = Path("/usr/share/activemq")


def fresh_schema(url: str) -> str:
    """Empty the PostgreSQL database at ``url`` and migrate it; returns ``url``."""
    from sqlalchemy import create_engine, text

    from central_api.db import migrate

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    migrate(url)
    return url


def person_cbeff(finger: int, impression: int) -> bytes:
    """A CBEFF of one FVC 'person': finger ``finger`` (101-110) of each of the four sets at
    positions 1-4, impression ``impression`` (1-8), as minutiae records (Format Type 2)."""
    templates = {
        position: (FVC / db / f"{finger}_{impression}.iso").read_bytes()
        for position, db in enumerate(SETS, start=1)
    }
    return formats.build(finger_templates=templates)


class Datashare:
    """MOSIP's datashare: serves bytes at URLs, over real HTTP, from a thread."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}
        items = self.items

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = items.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, body: bytes) -> str:
        """Serve ``body``; its URL."""
        path = f"/v1/datashare/get/mpolicy-default-abis/mpartner-default-abis/{uuid.uuid4().hex}"
        self.items[path] = body
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def request(op: str, **fields: Any) -> dict[str, Any]:
    """A request as MOSIP's registration processor builds it."""
    out: dict[str, Any] = {
        "id": f"mosip.abis.{op}",
        "version": "1.1",
        "requestId": str(uuid.uuid4()),
        "requesttime": now_text(),
    }
    out.update(fields)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """ActiveMQ 5 from Debian's package, as a child process with its own configuration."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        base.mkdir(parents=True, exist_ok=True)
        (base / "activemq.xml").write_text(
            f"""<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
  http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="rnp-test"
          dataDirectory="{base}/data" persistent="true">
    <persistenceAdapter><kahaDB directory="{base}/data/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{self.port}"/>
    </transportConnectors>
  </broker>
</beans>
"""
        )

    @staticmethod
    def available() -> str | None:
        """Why the broker cannot run here, or None."""
        if not (ACTIVEMQ_HOME / "bin/activemq.jar").exists():
            return "ActiveMQ is not installed (make test installs Debian's activemq)"
        if shutil.which("java") is None:
            return "no Java runtime (make test installs one with activemq)"
        return None

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait for its STOMP port."""
        home, base = ACTIVEMQ_HOME, self.base
        self.proc = subprocess.Popen(
            [
                "java",
                "-Xms64m",
                "-Xmx256m",
                f"-Dactivemq.home={home}",
                f"-Dactivemq.base={base}",
                f"-Dactivemq.conf={base}",
                f"-Dactivemq.data={base}/data",
                "-jar",
                str(home / "bin/activemq.jar"),
                "start",
                f"xbean:file:{base}/activemq.xml",
            ],
            stdout=open(base / "broker.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ActiveMQ exited; see {base / 'broker.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("ActiveMQ did not open its STOMP port")

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
