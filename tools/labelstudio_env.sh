#!/usr/bin/env bash
# Label Studio for atool's integration suite and for trying `atool labelstudio` by hand.
#
#   tools/labelstudio_env.sh install        # .venv-labelstudio/ with the pinned server (once; cached by a stamp)
#   tools/labelstudio_env.sh serve DIR PORT # run a server on 127.0.0.1:PORT with its data and images under DIR
#
# The server lives in its own environment: label-studio pins Django, numpy and
# opencv versions that must not meet atool's own .venv. LS_VENV=DIR puts it
# elsewhere (CI keeps it outside the fresh clone, so the cache outlives it).
set -euo pipefail

LS_VERSION="${LS_VERSION:-1.23.2}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LS_VENV:-$ROOT/.venv-labelstudio}"
STAMP="$VENV/.label-studio-$LS_VERSION"

install() {
    if [ -f "$STAMP" ]; then
        return 0
    fi
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    # --no-compile: byte-compiling all of Django and friends costs more than compiling what the server imports.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile "label-studio==$LS_VERSION"
    touch "$STAMP"
}

serve() {
    local dir="${1:?usage: serve DIR PORT}" port="${2:?usage: serve DIR PORT}"
    install
    mkdir -p "$dir/data" "$dir/files"
    # A legacy token lets `atool labelstudio` authenticate with `Authorization: Token ...`.
    export LABEL_STUDIO_BASE_DATA_DIR="$dir/data"
    export LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true
    export LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$dir/files"
    export LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true
    # Offline: no version check against the registry, no analytics, no converter downloads.
    export LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false CONVERTER_DOWNLOAD_RESOURCES=false
    export LABEL_STUDIO_USERNAME="${LABEL_STUDIO_USERNAME:-atool@example.com}"
    export LABEL_STUDIO_PASSWORD="${LABEL_STUDIO_PASSWORD:-atool-password}"
    export LABEL_STUDIO_USER_TOKEN="${LABEL_STUDIO_USER_TOKEN:-atool0000token0000atool0000token0000}"
    echo "LABEL_STUDIO_URL=http://127.0.0.1:$port LABEL_STUDIO_API_KEY=$LABEL_STUDIO_USER_TOKEN images under $dir/files" >&2
    exec "$VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$port" \
        --data-dir "$dir/data" --username "$LABEL_STUDIO_USERNAME" --password "$LABEL_STUDIO_PASSWORD" \
        --user-token "$LABEL_STUDIO_USER_TOKEN" --enable-legacy-api-token
}

case "${1:-install}" in
    install) install ;;
    serve) shift; serve "$@" ;;
    *) echo "usage: $0 install | serve DIR PORT" >&2; exit 2 ;;
esac
