#!/usr/bin/env bash
# Makes the test tools kstatus, promtool and helm-docs available in ONE directory and prints that directory (the last line on
# stdout; progress goes to stderr).
#
#   dir=$(./scripts/test-tools.sh | tail -n 1) && export TANIUM_KSTATUS="$dir/kstatus" TANIUM_PROMTOOL="$dir/promtool" \
#     TANIUM_HELM_DOCS="$dir/helm-docs"
#
#   * kstatus: tools/kstatus/ in this repository (its own go.mod and go.sum pin sigs.k8s.io/cli-utils), which prints
#     the kstatus verdict (Current, InProgress, Failed, ...) of the objects on its stdin; built with -mod=readonly
#     and rebuilt whenever its .go files, go.mod or go.sum change (their hash is kept in .kstatus.stamp);
#   * promtool: Prometheus' promtool at PROMETHEUS_VERSION, built from the Go module (`promtool check rules`,
#     `promtool test rules`); rebuilt when `promtool --version` does not report that version;
#   * helm-docs: github.com/norwoodj/helm-docs at HELM_DOCS_VERSION, built from the Go module with the version its
#     release build sets; it writes charts/tanium-operator/README.md from values.yaml (./scripts/chart-readme).
#
# All are built into ${XDG_CACHE_HOME:-~/.cache}/tanium-operator/test-tools/ (Go's module and build caches live
# under .go/ there while it builds and are removed once the binaries are in place), so a second run is a cache hit
# that takes well under a second. ./scripts/test exports TANIUM_KSTATUS, TANIUM_PROMTOOL and TANIUM_HELM_DOCS from it; a test finds
# a tool with tanium_testenv::TestTool (its variable, else the executable in that directory) and skips loudly
# without it unless CI=true or TANIUM_REQUIRE_K8S=1, as the control-plane tests do.
set -euo pipefail

# Prometheus v3.X.Y is published as the Go module version v0.3XX.Y (v3.16.0 is v0.316.0).
PROMETHEUS_VERSION=v3.16.0
HELM_DOCS_VERSION=v1.14.2

TOOLS=(kstatus promtool helm-docs)

log() { printf 'test-tools: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

repo=$(cd "$(dirname "$0")/.." && pwd -P)
kstatus_src="$repo/tools/kstatus"
cache_root="${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/tanium-operator"
dest="$cache_root/test-tools"

prom_module_version() { # v3.16.0 -> v0.316.0
	local v=${PROMETHEUS_VERSION#v} major minor patch
	IFS=. read -r major minor patch <<<"$v"
	printf 'v0.%d%02d.%s\n' "$major" "$minor" "$patch"
}

# The kstatus build's flags; part of its stamp, so changing them rebuilds it.
KSTATUS_LDFLAGS="-s -w"

# kstatus_stamp: what .kstatus.stamp must hold for the cached kstatus to be this checkout's
kstatus_stamp() {
	[[ -f "$kstatus_src/go.mod" ]] || die "$kstatus_src/go.mod is missing"
	local sum
	sum=$(cd "$kstatus_src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
		LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
	printf 'src=%s ldflags=%s\n' "$sum" "$KSTATUS_LDFLAGS"
}

# tool_ok TOOL: is $dest/TOOL the one this checkout pins?
tool_ok() {
	local bin="$dest/$1" out
	[[ -x "$bin" && ! -d "$bin" ]] || return 1
	case "$1" in
	kstatus)
		[[ -f "$dest/.kstatus.stamp" && "$(cat "$dest/.kstatus.stamp")" == "$(kstatus_stamp)" ]]
		;;
	promtool)
		out=$("$bin" --version 2>/dev/null) || return 1
		[[ "$out" == "promtool, version ${PROMETHEUS_VERSION#v} "* ]]
		;;
	helm-docs)
		out=$("$bin" --version 2>/dev/null) || return 1
		[[ "$out" == "helm-docs version ${HELM_DOCS_VERSION#v}" ]]
		;;
	*) return 1 ;;
	esac
}

all_ok() {
	local t
	for t in "${TOOLS[@]}"; do
		tool_ok "$t" || return 1
	done
}

# Go's module and build caches only serve a rebuild; CI machines have run out of disk with them kept.
drop_go_caches() {
	[[ -d "$dest/.go" || -d "$dest/.work" ]] || return 0
	local size
	# (du fails on whichever of the two is missing, which must not end the script)
	size=$(du -sch "$dest/.go" "$dest/.work" 2>/dev/null | tail -n 1 | cut -f 1) || true
	rm -rf "$dest/.go" "$dest/.work"
	log "removed Go's module and build caches under $dest ($size)"
}

if all_ok; then
	log "cache hit: $dest (kstatus $(cut -d' ' -f1 "$dest/.kstatus.stamp"), promtool $PROMETHEUS_VERSION, helm-docs $HELM_DOCS_VERSION)"
	drop_go_caches
	echo "$dest"
	exit 0
fi

mkdir -p "$dest"
exec 9>"$dest/.lock"
if ! flock -n 9; then
	log "another build holds $dest/.lock; waiting for it"
	flock 9
fi

command -v go >/dev/null 2>&1 || die "Go is needed to build ${TOOLS[*]} (https://go.dev/dl/)"
export GOMODCACHE="$dest/.go/mod" GOCACHE="$dest/.go/build" GOPATH="$dest/.go/path"
# -modcacherw: keep the module cache deletable with a plain rm -rf; GOWORK=off: no go.work above us may interfere
export GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0 GO111MODULE=on GOWORK=off
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
log "Go: $(go version); caches under $dest/.go"

# install_bin TMPFILE NAME: atomic install into $dest
install_bin() {
	chmod 0755 "$1"
	mv -f "$1" "$dest/$2"
}

build_kstatus() {
	local start=$SECONDS stamp
	stamp=$(kstatus_stamp)
	log "building kstatus from $kstatus_src (go build -mod=readonly: go.mod and go.sum as committed)"
	(cd "$kstatus_src" && go build -mod=readonly -trimpath -ldflags "$KSTATUS_LDFLAGS" -o "$dest/.kstatus.tmp" .)
	install_bin "$dest/.kstatus.tmp" kstatus
	echo "$stamp" >"$dest/.kstatus.stamp.tmp"
	mv -f "$dest/.kstatus.stamp.tmp" "$dest/.kstatus.stamp"
	log "built kstatus in $((SECONDS - start))s"
}

build_promtool() {
	local gobin="$dest/.work/promtool-bin" start=$SECONDS mod_ver
	mod_ver=$(prom_module_version)
	rm -rf "$gobin"
	mkdir -p "$gobin"
	log "building promtool $PROMETHEUS_VERSION (go install github.com/prometheus/prometheus/cmd/promtool@$mod_ver; a few minutes on 2 cores)"
	# buildDate: the release's publication time as the module proxy records it (reproducible builds)
	local date
	date=$(cd "$dest" && go list -m -json "github.com/prometheus/prometheus@$mod_ver" |
		sed -n 's/^[[:space:]]*"Time":[[:space:]]*"\([0-9]*\)-\([0-9]*\)-\([0-9]*\)T\([0-9:]*\)Z".*/\1\2\3-\4/p')
	[[ -n "$date" ]] || die "the module proxy gave no publication time for github.com/prometheus/prometheus@$mod_ver"
	local v=github.com/prometheus/common/version
	# the flags of Prometheus' own release build (.promu.yml; netgo is implied by CGO_ENABLED=0), with the module
	# version standing in for the git revision a module build does not have
	GOBIN="$gobin" go install -trimpath -tags netgo \
		-ldflags "-s -w -X $v.Version=${PROMETHEUS_VERSION#v} -X $v.Branch=HEAD -X $v.Revision=$mod_ver -X $v.BuildUser=tanium-operator/test-tools -X $v.BuildDate=$date" \
		"github.com/prometheus/prometheus/cmd/promtool@$mod_ver"
	install_bin "$gobin/promtool" promtool
	log "built promtool in $((SECONDS - start))s"
}

build_helm_docs() {
	local gobin="$dest/.work/helm-docs-bin" start=$SECONDS
	rm -rf "$gobin"
	mkdir -p "$gobin"
	log "building helm-docs $HELM_DOCS_VERSION (go install github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION)"
	# -X main.version: what its release build (goreleaser) sets; the README footer and the cache check name it
	GOBIN="$gobin" go install -trimpath -ldflags "-s -w -X main.version=${HELM_DOCS_VERSION#v}" \
		"github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION"
	install_bin "$gobin/helm-docs" helm-docs
	log "built helm-docs in $((SECONDS - start))s"
}

build_start=$SECONDS
for t in "${TOOLS[@]}"; do
	if tool_ok "$t"; then
		log "$t: cached ($dest/$t)"
	else
		"build_${t//-/_}"
	fi
done

for t in "${TOOLS[@]}"; do
	tool_ok "$t" || die "$dest/$t is not the pinned build after building it"
done
# a smoke test of each: the binaries run and answer as the tests expect
out=$(echo '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"smoke","namespace":"test-tools"}}' | "$dest/kstatus") ||
	die "kstatus failed on a ConfigMap"
[[ "$out" == *'"status":"Current"'* ]] || die "kstatus printed '$out' for a ConfigMap (expected status Current)"
log "binaries ready in $((SECONDS - build_start))s: kstatus, $("$dest/promtool" --version | head -n 1), $("$dest/helm-docs" --version)"

drop_go_caches
echo "$dest"
