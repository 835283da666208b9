#!/usr/bin/env bash
# Makes kube-apiserver, etcd, kubectl and helm available in ONE directory and prints that directory
# (the last line on stdout; progress goes to stderr).
#
#   dir=$(./scripts/k8s-test-bins.sh) && export KUBEBUILDER_ASSETS="$dir"
#
# Follows the envtest convention:
#   * if KUBEBUILDER_ASSETS names a directory holding kube-apiserver, etcd, kubectl and helm, that directory is
#     used as is (setup-envtest users, or a downloaded release, skip the build). If it holds kube-apiserver and
#     etcd only, the missing tools are built and a directory of symlinks joining both is printed;
#   * otherwise pinned versions are built from their Go modules into
#     ${XDG_CACHE_HOME:-~/.cache}/tanium-operator/k8s-<K8S_VERSION>/ (Go's module and build caches live under
#     .go/ there while it builds and are removed once every binary is in place), so a second run is a cache hit
#     that takes a second or two.
#
# The versions below are the single pin for the whole project (testenv/src/lib.rs checks it agrees).
# Kubernetes v1.36 is what k8s-openapi 0.29's `v1_36` feature targets.
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.5
HELM_VERSION=v3.19.0

TOOLS=(kube-apiserver etcd kubectl helm)

log() { printf 'k8s-test-bins: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

cache_root="${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/tanium-operator"
dest="$cache_root/k8s-$K8S_VERSION"
stamp="$dest/.stamp"
expected_stamp="kubernetes=$K8S_VERSION etcd=$ETCD_VERSION helm=$HELM_VERSION"

# version_ok TOOL PATH: does the binary at PATH report the pinned version?
version_ok() {
	local tool=$1 bin=$2 out
	[[ -x "$bin" ]] || return 1
	case "$tool" in
	kube-apiserver)
		out=$("$bin" --version 2>/dev/null) || return 1
		[[ "$out" == "Kubernetes $K8S_VERSION" ]]
		;;
	kubectl)
		out=$("$bin" version --client 2>/dev/null) || return 1
		[[ "$out" == *"Client Version: $K8S_VERSION"* ]]
		;;
	etcd)
		out=$("$bin" --version 2>/dev/null) || return 1
		[[ "$out" == *"etcd Version: ${ETCD_VERSION#v}"* ]]
		;;
	helm)
		out=$("$bin" version --short 2>/dev/null) || return 1
		[[ "$out" == "$HELM_VERSION"* ]] && helm_kube_ok "$bin"
		;;
	*) return 1 ;;
	esac
}

# The Kubernetes version helm assumes without --kube-version (.Capabilities.KubeVersion, a chart's kubeVersion
# constraint, helm lint's deprecation checks): helm's Makefile sets it with -X ldflags, from its client-go's version;
# a plain `go install` keeps the source's default, v1.20.0, and `helm template` then refuses a chart that needs
# kubeVersion >=1.30. Ours is set to the Kubernetes the tests run (K8S_VERSION's major.minor, patch 0).
helm_kube_version() {
	local v=${K8S_VERSION#v}
	printf 'v%s.%s.0\n' "${v%%.*}" "$(cut -d. -f2 <<<"$v")"
}

# helm_kube_ok PATH: does the helm at PATH assume helm_kube_version? It renders a one-template chart (well under a
# second), so a helm built without the ldflags, as this script did before, fails it and is rebuilt on its own.
helm_kube_ok() {
	local bin=$1 probe out want
	want=$(helm_kube_version)
	probe=$(mktemp -d)
	mkdir -p "$probe/templates"
	printf 'apiVersion: v2\nname: kube-version-probe\nversion: 0.1.0\n' >"$probe/Chart.yaml"
	printf 'kubeVersion: {{ .Capabilities.KubeVersion.Version }}\n' >"$probe/templates/probe.yaml"
	out=$(HELM_CACHE_HOME="$probe/.cache" HELM_CONFIG_HOME="$probe/.config" HELM_DATA_HOME="$probe/.data" \
		"$bin" template probe "$probe" 2>/dev/null) || out=""
	rm -rf "$probe"
	[[ "$out" == *"kubeVersion: $want"* ]]
}

# has_tools DIR TOOL...: are all TOOLs executable files in DIR?
has_tools() {
	local dir=$1 t
	shift
	for t in "$@"; do
		[[ -x "$dir/$t" && ! -d "$dir/$t" ]] || return 1
	done
}

cache_hit() {
	[[ -f "$stamp" && "$(cat "$stamp")" == "$expected_stamp" ]] || return 1
	local t
	for t in "${TOOLS[@]}"; do
		version_ok "$t" "$dest/$t" || return 1
	done
}

# Go's module and build caches (about 4.5 GB) only serve a rebuild; the binaries are what is cached. CI machines
# have run out of disk with them kept. Called once every binary is in place.
drop_go_caches() {
	[[ -d "$dest/.go" || -d "$dest/.work" ]] || return 0
	local size
	# (du fails on whichever of the two is missing, which must not end the script)
	size=$(du -sch "$dest/.go" "$dest/.work" 2>/dev/null | tail -n 1 | cut -f 1) || true
	rm -rf "$dest/.go" "$dest/.work"
	log "removed Go's module and build caches under $dest ($size)"
}

# ---------------------------------------------------------------------------------------------------------------
# 1. KUBEBUILDER_ASSETS
want=("${TOOLS[@]}")
external=""
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
	if has_tools "$KUBEBUILDER_ASSETS" "${TOOLS[@]}"; then
		log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS (has ${TOOLS[*]})"
		echo "$KUBEBUILDER_ASSETS"
		exit 0
	elif has_tools "$KUBEBUILDER_ASSETS" kube-apiserver etcd; then
		external=$(cd "$KUBEBUILDER_ASSETS" && pwd -P)
		want=()
		for t in kubectl helm; do
			has_tools "$external" "$t" || want+=("$t")
		done
		log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has kube-apiserver and etcd but not ${want[*]}; providing those"
	else
		log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no kube-apiserver/etcd; ignoring it"
	fi
fi

# 2. the pinned build in the cache
if [[ -z "$external" ]] && cache_hit; then
	log "cache hit: $dest ($expected_stamp)"
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

# setup_go TOOL...: check for Go and point its caches into $dest (only when something must be built)
go_ready=0
setup_go() {
	((go_ready == 0)) || return 0
	go_ready=1
	command -v go >/dev/null 2>&1 ||
		die "Go is needed to build $* (https://go.dev/dl/), or set KUBEBUILDER_ASSETS to a directory holding ${TOOLS[*]}"
	export GOMODCACHE="$dest/.go/mod" GOCACHE="$dest/.go/build" GOPATH="$dest/.go/path"
	# -modcacherw: keep the module cache deletable with a plain rm -rf
	export GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0 GO111MODULE=on
	export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
	log "Go: $(go version); caches under $dest/.go"
}

# install_bin TMPFILE NAME: atomic install into $dest
install_bin() {
	chmod 0755 "$1"
	mv -f "$1" "$dest/$2"
}

# scratch_module DIR MAIN_MODULE MAIN_VERSION LOCAL_REPLACE_VERSION PKG...
# Writes DIR/go.mod requiring MAIN_MODULE@MAIN_VERSION and replacing every module that MAIN_MODULE's own go.mod
# replaces with a local path (./staging/..., ../api, ...) by its published LOCAL_REPLACE_VERSION, plus a tools.go
# importing PKG..., then tidies it. The replace list is read from MAIN_MODULE's go.mod, never hand-maintained.
scratch_module() {
	local dir=$1 mod=$2 ver=$3 local_ver=$4
	shift 4
	local gomod
	gomod=$(go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p')
	[[ -n "$gomod" && -f "$gomod" ]] || die "could not download $mod@$ver"
	local staged
	staged=$(sed -n 's/^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]\{1,\}\)[[:space:]]\{1,\}=>[[:space:]]\{1,\}\.\{1,2\}\/.*$/\2/p' "$gomod" | sort -u)
	# only modules it also requires (etcd replaces a few it must never depend on with ./FORBIDDEN_DEPENDENCY)
	local required
	required=$(sed -n -e 's/^require[[:space:]]\{1,\}\([^([:space:]][^[:space:]]*\)[[:space:]].*/\1/p' \
		-e '/^require[[:space:]]*(/,/^)/s/^[[:space:]]\{1,\}\([^[:space:]/][^[:space:]]*\)[[:space:]]\{1,\}v[0-9].*/\1/p' "$gomod" | sort -u)
	staged=$(comm -12 <(echo "$staged") <(echo "$required"))
	[[ -n "$staged" ]] || die "$mod@$ver: found no locally replaced modules in $gomod"
	log "$mod@$ver replaces $(wc -l <<<"$staged" | tr -d ' ') modules with local paths; using their published $local_ver"

	rm -rf "$dir"
	mkdir -p "$dir"
	(
		cd "$dir"
		go mod init tanium-operator.local/k8s-test-bins >/dev/null 2>&1
		local args=("-require=$mod@$ver") m
		while IFS= read -r m; do
			args+=("-replace=$m=$m@$local_ver")
		done <<<"$staged"
		go mod edit "${args[@]}"
		{
			echo '//go:build tools'
			echo
			echo 'package tools'
			echo
			echo 'import ('
			local p
			for p in "$@"; do echo "	_ \"$p\""; done
			echo ')'
		} >tools.go
		log "go mod tidy in $dir"
		if ! go mod tidy 2>tidy.log; then
			cat tidy.log >&2
			die "go mod tidy failed in $dir"
		fi
	)
}

build_kubernetes() { # TOOL...
	setup_go "$@"
	local dir="$dest/.work/kubernetes" minor_patch=${K8S_VERSION#v1.}
	local staging_ver="v0.$minor_patch" t pkgs=()
	for t in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
	scratch_module "$dir" k8s.io/kubernetes "$K8S_VERSION" "$staging_ver" "${pkgs[@]}"
	local major=${K8S_VERSION#v}
	major=${major%%.*}
	local minor=${minor_patch%%.*}
	# buildDate: the release's publication time as the module proxy records it (reproducible builds)
	local date ldflags=("-s" "-w") pkg
	date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.info" 2>/dev/null || true)
	[[ -n "$date" ]] || date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=("-X" "$pkg.gitVersion=$K8S_VERSION" "-X" "$pkg.gitMajor=$major" "-X" "$pkg.gitMinor=$minor"
			"-X" "$pkg.gitTreeState=clean" "-X" "$pkg.buildDate=$date" "-X" "$pkg.gitCommit=")
	done
	for t in "$@"; do
		if [[ "$t" == kube-apiserver ]]; then
			log "building $t $K8S_VERSION (a few minutes on 2 cores when the Go build cache is cold)"
		else
			log "building $t $K8S_VERSION"
		fi
		local start=$SECONDS
		(cd "$dir" && go build -mod=mod -trimpath -ldflags "${ldflags[*]}" -o "$dest/.$t.tmp" "k8s.io/kubernetes/cmd/$t")
		install_bin "$dest/.$t.tmp" "$t"
		log "built $t in $((SECONDS - start))s"
	done
}

# Debian's etcd-server is used only if the apiserver accepts its version: Kubernetes v1.36 supports etcd 3.5 and
# 3.6 (3.4 is out of support and lacks the watch-progress requests the apiserver's consistent reads rely on).
debian_etcd() {
	command -v apt-cache >/dev/null 2>&1 || return 1
	local cand
	cand=$(apt-cache policy etcd-server 2>/dev/null | sed -n 's/^[[:space:]]*Candidate:[[:space:]]*\([0-9][0-9.]*\).*/\1/p')
	[[ -n "$cand" ]] || return 1
	local major=${cand%%.*} rest=${cand#*.}
	local minor=${rest%%.*}
	if ((major < 3 || (major == 3 && minor < 5))); then
		log "Debian's etcd-server is $cand, older than the 3.5 kube-apiserver $K8S_VERSION needs; building etcd $ETCD_VERSION"
		return 1
	fi
	if [[ -x /usr/bin/etcd ]]; then
		log "using Debian's etcd $cand (/usr/bin/etcd)"
		ln -sfn /usr/bin/etcd "$dest/.etcd.tmp"
		mv -f "$dest/.etcd.tmp" "$dest/etcd"
		return 0
	fi
	log "Debian's etcd-server $cand would do but is not installed (apt-get install etcd-server); building etcd $ETCD_VERSION"
	return 1
}

build_etcd() {
	setup_go etcd
	local dir="$dest/.work/etcd" start=$SECONDS
	scratch_module "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" go.etcd.io/etcd/server/v3
	log "building etcd $ETCD_VERSION"
	(cd "$dir" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$dest/.etcd.tmp" go.etcd.io/etcd/server/v3)
	install_bin "$dest/.etcd.tmp" etcd
	log "built etcd in $((SECONDS - start))s"
}

build_helm() {
	setup_go helm
	local gobin="$dest/.work/helm-bin" start=$SECONDS pkg
	rm -rf "$gobin"
	mkdir -p "$gobin"
	# the ldflags of helm's Makefile, but with the Kubernetes version set to ours (see helm_kube_version)
	local kube major minor ldflags=("-s" "-w")
	kube=$(helm_kube_version)
	kube=${kube#v}
	major=${kube%%.*}
	minor=$(cut -d. -f2 <<<"$kube")
	ldflags+=("-X" "helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "-X" "helm.sh/helm/v3/internal/version.gitTreeState=clean")
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		ldflags+=("-X" "$pkg.k8sVersionMajor=$major" "-X" "$pkg.k8sVersionMinor=$minor")
	done
	log "building helm $HELM_VERSION (go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION; default Kubernetes v$kube)"
	GOBIN="$gobin" go install -trimpath -ldflags "${ldflags[*]}" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
	install_bin "$gobin/helm" helm
	log "built helm in $((SECONDS - start))s"
}

build_start=$SECONDS
missing=()
for t in "${want[@]}"; do
	if version_ok "$t" "$dest/$t"; then
		log "$t: cached ($dest/$t)"
	else
		missing+=("$t")
	fi
done
k8s_tools=()
for t in "${missing[@]}"; do
	case "$t" in
	kube-apiserver | kubectl) k8s_tools+=("$t") ;;
	etcd) debian_etcd || build_etcd ;;
	helm) build_helm ;;
	esac
done
((${#k8s_tools[@]} == 0)) || build_kubernetes "${k8s_tools[@]}"

for t in "${want[@]}"; do
	version_ok "$t" "$dest/$t" || die "$dest/$t does not report the pinned version after the build"
done
log "binaries ready in $((SECONDS - build_start))s"

drop_go_caches

if [[ -z "$external" ]]; then
	echo "$expected_stamp" >"$stamp.tmp"
	mv -f "$stamp.tmp" "$stamp"
	echo "$dest"
	exit 0
fi

# KUBEBUILDER_ASSETS had kube-apiserver and etcd only: join it with our kubectl/helm in a directory of symlinks.
joined="$cache_root/assets-$(printf '%s' "$external" | sha256sum | cut -c1-12)"
mkdir -p "$joined"
for t in kube-apiserver etcd kubectl helm; do
	src="$external/$t"
	has_tools "$external" "$t" || src="$dest/$t"
	ln -sfn "$src" "$joined/.$t.tmp"
	mv -fT "$joined/.$t.tmp" "$joined/$t"
done
log "joined $external with $dest in $joined"
echo "$joined"
