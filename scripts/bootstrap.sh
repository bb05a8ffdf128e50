#!/usr/bin/env bash
# Create or update .venv with the pinned dependencies. Idempotent and quick when nothing changed.
# Used by `make demo` and `make test`; safe to run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ "$(id -u)" = 0 ] && ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "bootstrap: installing python3-venv (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi

# system packages: the PC/SC daemon and the virtual reader driver the card tests run against
# (vsmartcard-vpcd is for the tests and the demo only: never install it on a real kiosk, where
# `devices serve` refuses to start beside it),
# what building pyscard needs (it ships no Linux wheel), and Chromium with Arabic and Tifinagh
# fonts for the kiosk UI (and its end-to-end tests, which drive it with Playwright)
# and the ActiveMQ broker MOSIP talks to its ABIS through (tests start their own instance);
# Tesseract and the OCR-B typeface for reading a document's MRZ from the document camera,
# espeak-ng for rendering the kiosk's spoken guidance at build time, poppler-utils for the
# receipt tests (pdftotext on the printed PDF)
pkgs="pcscd vsmartcard-vpcd libpcsclite-dev swig gcc python3-dev chromium fonts-noto-core fonts-noto-color-emoji activemq tesseract-ocr fonts-ocr-b espeak-ng poppler-utils"
if command -v dpkg >/dev/null 2>&1; then
  missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done | xargs)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "bootstrap: installing $missing (Debian)" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq $missing >/dev/null
    else
      echo "bootstrap: please install (as root): apt-get install $missing" >&2
    fi
  fi
fi

# the kiosk's spoken guidance, rendered from the message catalogues (only what changed)
render_voice() {
  if command -v espeak-ng >/dev/null 2>&1; then
    .venv/bin/kiosk voice render >/dev/null || echo "bootstrap: spoken guidance not rendered" >&2
  fi
}

# libfprint's single-finger readers through PyGObject (built against Debian 12's glib; says
# why and goes on when it cannot)
libfprint() { bash scripts/install-libfprint.sh .venv; }

stamp=.venv/.installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  libfprint
  render_voice
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "bootstrap: installing pinned dependencies into .venv" >&2
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock pip setuptools wheel
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
# face_recognition's metadata asks for the source `dlib` (a long C++ compile); dlib-bin,
# installed above, ships the same module prebuilt, so the wrapper goes in without deps.
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock --no-deps face_recognition
.venv/bin/python -c 'import face_recognition, faiss, cv2, fastapi, sqlalchemy, smartcard, asn1crypto, zmq, jinja2, segno, multipart, nbis, ray, stomp, defusedxml' 2>/dev/null \
  || { echo "bootstrap: dependency import check failed" >&2; exit 1; }
libfprint
echo "$want" > "$stamp"
render_voice
