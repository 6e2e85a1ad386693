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
MLSERVER_VERSION="1.7.1"  # newest on PyPI; no ONNX runtime exists for it, so sklearn (+ a custom one)
ONNXRUNTIME_VERSION="1.32.0"  # as in .venv (CPU wheel), for the thin endpoint and MLServer's custom ONNX runtime
FASTAPI_VERSION="0.165.0"      # the thin endpoint (W-SERVE's limit)
UVICORN_VERSION="0.54.0"
EVIDENTLY_VERSION="0.7.23"  # W-DRIFT's peer (DataDriftPreset)
PANDAS_EVIDENTLY_VERSION="2.3.3"  # Evidently 0.7.23 needs pandas<3 (PITFALLS.md); newest 2.x

# has_versions VENV PKG==VERSION...: true when VENV exists and holds exactly those versions.
has_versions() {
    local venv="$1"
    shift
    [[ -x "$venv/bin/python" ]] && "$venv/bin/python" - "$@" 2>/dev/null <<'PY'
import importlib.metadata as m, sys
sys.exit(any(m.version(p) != v for p, v in (a.split("==") for a in sys.argv[1:])))
PY
}

# new_venv VENV: a fresh virtual environment with a current pip.
new_venv() {
    "$PYTHON" -m venv "$1"
    "$1/bin/pip" install --quiet --upgrade pip
}

setup_mlflow() {
    local venv="$VENVS/mlflow"
    if has_versions "$venv" "mlflow==$MLFLOW_VERSION"; then
        echo "mlflow $MLFLOW_VERSION already installed in $venv"
        return
    fi
    echo "creating $venv (mlflow==$MLFLOW_VERSION)"
    new_venv "$venv"
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
    if has_versions "$venv" "flwr==$FLWR_VERSION"; then
        echo "flwr $FLWR_VERSION already installed in $venv"
        return
    fi
    echo "creating $venv (flwr[simulation]==$FLWR_VERSION, torch==$TORCH_CPU_VERSION CPU)"
    new_venv "$venv"
    # The CPU torch first, so nothing below can pull a CUDA build.
    "$venv/bin/pip" install --quiet "torch==$TORCH_CPU_VERSION"
    "$venv/bin/pip" install --quiet "flwr[simulation]==$FLWR_VERSION" scikit-learn psutil
    "$venv/bin/python" -c "import flwr, torch; print('flwr', flwr.__version__, 'torch', torch.__version__, 'ready in $venv')"
}

# W-SERVE: MLServer with its scikit-learn runtime (LogisticRegression, as WORKLOADS allows) and
# onnxruntime for a custom runtime serving the same ONNX MLP (benchmarks/peers/mlserver_serve_onnx.py).
# uvloop<0.22: MLServer 1.7.1 fails to start with uvloop 0.22 (PITFALLS.md).
setup_mlserver() {
    local venv="$VENVS/mlserver"
    if has_versions "$venv" "mlserver==$MLSERVER_VERSION" "mlserver-sklearn==$MLSERVER_VERSION"; then
        echo "mlserver $MLSERVER_VERSION already installed in $venv"
        return
    fi
    echo "creating $venv (mlserver==$MLSERVER_VERSION + mlserver-sklearn, onnxruntime CPU)"
    new_venv "$venv"
    "$venv/bin/pip" install --quiet "mlserver==$MLSERVER_VERSION" "mlserver-sklearn==$MLSERVER_VERSION" \
        "uvloop<0.22" "onnxruntime==$ONNXRUNTIME_VERSION" "scikit-learn==1.9.1" numpy
    if "$venv/bin/pip" list 2>/dev/null | grep -qiE '^(torch|nvidia-)'; then
        echo "torch or a CUDA package came into $venv; W-SERVE peers must stay CPU-only without torch" >&2
        exit 1
    fi
    "$venv/bin/python" -c "import mlserver, mlserver_sklearn, onnxruntime; print('mlserver', mlserver.__version__, 'onnxruntime', onnxruntime.__version__, 'ready in $venv')"
}

# W-SERVE: the thin endpoint (the limit): FastAPI + uvicorn calling onnxruntime directly.
setup_thin() {
    local venv="$VENVS/thin"
    if has_versions "$venv" "onnxruntime==$ONNXRUNTIME_VERSION" "fastapi==$FASTAPI_VERSION" "uvicorn==$UVICORN_VERSION"; then
        echo "thin endpoint (fastapi $FASTAPI_VERSION, uvicorn $UVICORN_VERSION, onnxruntime $ONNXRUNTIME_VERSION) already installed in $venv"
        return
    fi
    echo "creating $venv (fastapi==$FASTAPI_VERSION + uvicorn==$UVICORN_VERSION + onnxruntime==$ONNXRUNTIME_VERSION CPU)"
    new_venv "$venv"
    "$venv/bin/pip" install --quiet "fastapi==$FASTAPI_VERSION" "uvicorn[standard]==$UVICORN_VERSION" \
        "onnxruntime==$ONNXRUNTIME_VERSION" numpy
    "$venv/bin/python" -c "import fastapi, uvicorn, onnxruntime; print('fastapi', fastapi.__version__, 'uvicorn', uvicorn.__version__, 'onnxruntime', onnxruntime.__version__, 'ready in $venv')"
}

# W-DRIFT: Evidently's default data-drift preset (benchmarks/peers/evidently_drift.py).
# pandas<3: Evidently 0.7.23 breaks on pandas 3 (PITFALLS.md), so the newest 2.x is pinned.
setup_evidently() {
    local venv="$VENVS/evidently"
    if has_versions "$venv" "evidently==$EVIDENTLY_VERSION" "pandas==$PANDAS_EVIDENTLY_VERSION"; then
        echo "evidently $EVIDENTLY_VERSION already installed in $venv"
        return
    fi
    echo "creating $venv (evidently==$EVIDENTLY_VERSION, pandas==$PANDAS_EVIDENTLY_VERSION)"
    new_venv "$venv"
    "$venv/bin/pip" install --quiet "evidently==$EVIDENTLY_VERSION" "pandas==$PANDAS_EVIDENTLY_VERSION" numpy
    if "$venv/bin/pip" list 2>/dev/null | grep -qiE '^(torch|nvidia-)'; then
        echo "torch or a CUDA package came into $venv; the W-DRIFT peer must stay CPU-only without torch" >&2
        exit 1
    fi
    "$venv/bin/python" -c "import evidently, pandas, scipy; print('evidently', evidently.__version__, 'pandas', pandas.__version__, 'scipy', scipy.__version__, 'ready in $venv')"
}

peers=("$@")
if [[ ${#peers[@]} -eq 0 ]]; then
    peers=(mlflow flower mlserver thin evidently)
fi
for peer in "${peers[@]}"; do
    case "$peer" in
        mlflow) setup_mlflow ;;
        flower) setup_flower ;;
        mlserver) setup_mlserver ;;
        thin) setup_thin ;;
        evidently) setup_evidently ;;
        *)
            echo "unknown peer: $peer (known: mlflow flower mlserver thin evidently)" >&2
            exit 2
            ;;
    esac
done
