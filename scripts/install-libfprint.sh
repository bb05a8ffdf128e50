#!/usr/bin/env bash
# libfprint fingerprint readers (devices/libfprint.py): the system library, its GObject
# introspection data, and PyGObject in a virtualenv.
#
#   scripts/install-libfprint.sh [VENV]        (VENV defaults to .venv; run as root for apt)
#
# Idempotent: does nothing when the venv already imports FPrint 2.0. Never fails the set-up
# around it: when something cannot be installed it says what and exits 0 (the libfprint
# tests then skip, saying why). Debian 12: libfprint 1.94.5 (with its virtual_image test
# driver), glib 2.74. PyGObject >= 3.50 needs girepository-2.0 (glib >= 2.80), so PyGObject
# 3.48.x is built from source against libgirepository1.0-dev and libcairo2-dev (about 30-60 s).
# If that build fails, Debian's own python3-gi is linked into the venv when both are
# CPython 3.11 (the same ABI).
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-.venv}
PY="$VENV/bin/python"
say() { echo "install-libfprint: $*" >&2; }
give_up() { say "$*"; say "libfprint readers stay unavailable here (their tests skip)"; exit 0; }

# exact versions: requirements.lock wins when it pins them
pin() { # pin NAME DEFAULT
  local v
  v=$(grep -i -m1 "^$1==" requirements.lock 2>/dev/null | cut -d= -f3 | tr -d '[:space:]')
  echo "${v:-$2}"
}
PYGOBJECT=${PYGOBJECT_VERSION:-$(pin PyGObject 3.48.2)}
PYCAIRO=${PYCAIRO_VERSION:-$(pin pycairo 1.29.2)}

[ -x "$PY" ] || give_up "no virtualenv at $VENV (run scripts/bootstrap.sh first)"

has_fprint() {
  "$PY" -c 'import gi; gi.require_version("FPrint", "2.0"); from gi.repository import FPrint' \
    >/dev/null 2>&1
}

# ---------------------------------------------------------------- system packages
runtime="libfprint-2-2 gir1.2-fprint-2.0"
build="libgirepository1.0-dev libcairo2-dev pkg-config gcc"
if ! "$PY" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' >/dev/null 2>&1; then
  build="$build python3-dev" # a venv of Debian's own Python: its headers
fi
if command -v dpkg >/dev/null 2>&1; then
  if has_fprint; then
    wanted=$runtime # PyGObject is there already: no build dependencies needed
  else
    wanted="$runtime $build"
  fi
  missing=$(for p in $wanted; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done | xargs)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing $missing (Debian)"
      export DEBIAN_FRONTEND=noninteractive
      if ! apt-get install -y -qq $missing >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1
        apt-get install -y -qq $missing >/dev/null ||
          give_up "apt-get could not install: $missing"
      fi
    else
      give_up "please install (as root): apt-get install $missing"
    fi
  fi
else
  say "not Debian: install libfprint 2 and its GObject introspection data (FPrint-2.0.typelib) yourself"
fi

# ---------------------------------------------------------------- PyGObject in the venv
if has_fprint; then
  say "ready: $VENV imports FPrint 2.0 ($("$PY" -c 'import gi; print("PyGObject", gi.__version__)' 2>/dev/null))"
  exit 0
fi

started=$SECONDS
say "building PyGObject==$PYGOBJECT (with pycairo==$PYCAIRO) into $VENV"
if "$PY" -m pip install -q --disable-pip-version-check \
  "PyGObject==$PYGOBJECT" "pycairo==$PYCAIRO" >&2; then
  say "PyGObject built in $((SECONDS - started)) s"
else
  say "building PyGObject failed; trying Debian's python3-gi"
  debian_gi=/usr/lib/python3/dist-packages/gi
  if [ ! -d "$debian_gi" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-gi >/dev/null 2>&1
  fi
  venv_abi=$("$PY" -c 'import sys; print(sys.implementation.cache_tag)' 2>/dev/null)
  if [ -d "$debian_gi" ] && ls "$debian_gi"/_gi."$venv_abi"-*.so >/dev/null 2>&1; then
    site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    ln -sfn "$debian_gi" "$site/gi"
    say "linked Debian's python3-gi ($debian_gi) into $site"
  else
    give_up "no PyGObject for $VENV's Python ($venv_abi): neither a build nor Debian's python3-gi fits"
  fi
fi

if has_fprint; then
  say "ready: $VENV imports FPrint 2.0"
else
  give_up "PyGObject is installed but FPrint 2.0 does not import: $("$PY" -c 'import gi; gi.require_version("FPrint", "2.0")' 2>&1 | tail -1)"
fi
