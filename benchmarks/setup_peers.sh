#!/usr/bin/env bash
# Create one virtual environment per benchmark peer under .bench-venvs/ (repo root).
#
#   bash benchmarks/setup_peers.sh mlflow      # set up the named peer(s)
#   bash benchmarks/setup_peers.sh             # set up every known peer
#
# Idempotent: a venv that already has the pinned version is left alone.
# Each peer lives in its own venv so its dependencies never touch .venv (fedloop's).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="$ROOT/.bench-venvs"
PYTHON="${PYTHON:-python3}"

# Pinned peer versions (update deliberately; RESULTS.md records which one was measured).
MLFLOW_VERSION="3.17.2"  # 3.18.0 exists but its mlflow-skinny==3.18.0 does not resolve here
FLWR_VERSION="1.42.0"   # Flower's simulation engine (Ray inside) for W-FL
# mlflow does not need torch; if a dependency ever pulls it, take the CPU wheel, never CUDA.
TORCH_CPU_VERSION="2.13.0"

setup_mlflow() {
    local venv="$VENVS/mlflow"
    if [[ -x "$venv/bin/python" ]] &&
        "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mlflow') != '$MLFLOW_VERSION')" 2>/dev/null; then
        echo "mlflow $MLFLOW_VERSION already installed in $venv"
        return
    fi
    echo "creating $venv (mlflow==$MLFLOW_VERSION)"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "mlflow==$MLFLOW_VERSION"
    # Refuse a CUDA torch if one slipped in through a dependency.
    if "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then
        if "$venv/bin/pip" list 2>/dev/null | grep -qi '^nvidia-'; then
            echo "a CUDA torch came in; replacing it with torch==$TORCH_CPU_VERSION (CPU)"
            "$venv/bin/pip" uninstall --quiet -y torch $("$venv/bin/pip" list 2>/dev/null | awk 'tolower($1) ~ /^nvidia-/ {print $1}')
            "$venv/bin/pip" install --quiet "torch==$TORCH_CPU_VERSION"
        fi
    fi
    "$venv/bin/python" -c "import mlflow; print('mlflow', mlflow.__version__, 'ready in $venv')"
}

setup_flower() {
    local venv="$VENVS/flower"
    if [[ -x "$venv/bin/python" ]] &&
        "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('flwr') != '$FLWR_VERSION')" 2>/dev/null; then
        echo "flwr $FLWR_VERSION already installed in $venv"
        return
    fi
    echo "creating $venv (flwr[simulation]==$FLWR_VERSION, torch==$TORCH_CPU_VERSION CPU)"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    # The CPU torch first, so nothing below can pull a CUDA build.
    "$venv/bin/pip" install --quiet "torch==$TORCH_CPU_VERSION"
    "$venv/bin/pip" install --quiet "flwr[simulation]==$FLWR_VERSION" scikit-learn psutil
    "$venv/bin/python" -c "import flwr, torch; print('flwr', flwr.__version__, 'torch', torch.__version__, 'ready in $venv')"
}

peers=("$@")
if [[ ${#peers[@]} -eq 0 ]]; then
    peers=(mlflow flower)
fi
for peer in "${peers[@]}"; do
    case "$peer" in
        mlflow) setup_mlflow ;;
        flower) setup_flower ;;
        *)
            echo "unknown peer: $peer (known: mlflow flower)" >&2
            exit 2
            ;;
    esac
done
