#!/bin/bash
# Checks the Kubernetes manifests under deploy/k8s without a cluster.
#
#   validate: `kubectl kustomize` renders both overlays; every rendered object
#             (and deploy/k8s/examples/*.yaml) passes k8s-validate/validate.js:
#             OpenAPI schema (npm kubernetes-models, prometheus-operator for the
#             PodMonitor), field names (TypeScript), references within the set.
#             Then broken copies must fail it, so that a validator that passes
#             everything cannot go unnoticed.
#   play:     `podman kube play` runs the sidecar overlay's pod with the image
#             build_image.sh built: both containers run, the worker reaches the
#             daemon through the shared emptyDir, the ConfigMap's settings
#             arrive, a buffer goes from one process to another; the liveness
#             probe (which podman turns into the container's health check)
#             passes, and fails while the daemon is frozen. Then the DaemonSet's
#             pod (as a Pod: kube play has no DaemonSets) with its hostPath under
#             a scratch directory: the init container hands the directory to
#             the daemon's uid and the daemon serves. `podman kube down` after.
#   all:      both (the default).
#
# npm packages: `npm ci` from k8s-validate/package-lock.json into a cache
# outside the tree (npm_lib.sh).
# Usage: tests/deploy/check_k8s.sh [validate|play|all]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/podman_lib.sh"   # log, die, require_tools, and podman for `play`
source "$here/npm_lib.sh"      # npm_modules
root=$deploy_root
k8s=$root/deploy/k8s
validator=$here/k8s-validate
mode=${1:-all}
case $mode in validate | play | all) ;; *) die "usage: $0 [validate|play|all]" ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmbroker-k8s.XXXXXX")
played=()
cleanup() {
  local rc=$? f
  for f in "${played[@]}"; do
    podman kube down "$f" >/dev/null 2>&1 || true
  done
  [[ -n ${podman_scratch:-} ]] && rm -rf "$podman_scratch"
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT

# --- npm dependencies, cached per lock file (npm_lib.sh)
validator_modules() {
  npm_modules "$validator"
  export K8S_VALIDATE_MODULES=$npm_modules_dir
}

render() {  # overlay -> file
  require_tools kubectl
  kubectl kustomize "$k8s/overlays/$1" >"$2" || die "kubectl kustomize deploy/k8s/overlays/$1"
}

kinds_of() { grep -E '^kind: ' "$1" | sed 's/^kind: //' | sort | tr '\n' ' '; }

validate_manifests() {
  validator_modules
  local o
  for o in sidecar daemonset; do
    log "kubectl kustomize deploy/k8s/overlays/$o"
    render "$o" "$tmp/$o.yaml"
    echo "  kinds: $(kinds_of "$tmp/$o.yaml")"
  done
  [[ $(kinds_of "$tmp/sidecar.yaml") == "ConfigMap Deployment Namespace " ]] ||
    die "sidecar overlay: unexpected kinds"
  [[ $(kinds_of "$tmp/daemonset.yaml") == "ConfigMap DaemonSet Namespace PodMonitor " ]] ||
    die "daemonset overlay: unexpected kinds"

  # One run per layout, so that references resolve only within that layout.
  log "validate the sidecar overlay"
  node "$validator/validate.js" "$tmp/sidecar.yaml"
  log "validate the daemonset overlay and deploy/k8s/examples/"
  node "$validator/validate.js" "$tmp/daemonset.yaml" "$k8s"/examples/*.yaml

  log "the validator must reject broken copies"
  must_reject sidecar 's/memory: 128Mi$/memory: 128Mb/' "bad quantity"
  must_reject sidecar 's/readinessProbe:/readinesProbe:/' "misspelt field"
  must_reject sidecar 's/replicas: 1$/replicas: one/' "wrong type"
  must_reject daemonset 's/^kind: DaemonSet$/kind: DaemonSett/' "unknown kind"
  must_reject daemonset 's/^    port: metrics$/    port: metric/' "PodMonitor port no pod has"
  must_reject daemonset 's/^        name: shmbroker-run$/        name: shmbroker-rum/' "mount of a missing volume"
}

must_reject() {  # overlay sed-expression description
  local broken=$tmp/broken.yaml out
  sed "$2" "$tmp/$1.yaml" >"$broken"
  cmp -s "$tmp/$1.yaml" "$broken" && die "self-test '$3': '$2' changed nothing in the $1 overlay"
  if out=$(node "$validator/validate.js" "$broken" 2>&1); then
    echo "$out"; die "the validator accepted a $3 ($2)"
  fi
  grep -q '^INVALID ' <<<"$out" || { echo "$out"; die "the validator failed for another reason than a $3"; }
  echo "  rejected: $3 ($(grep -m1 '^INVALID ' <<<"$out" | cut -c1-140))"
}

# --- podman kube play
# A kustomization of our own on top of an overlay: the test's image, and a
# name prefix so that names do not collide with anything else in podman.
play_kustomization() {  # overlay dir -> rendered file
  local overlay=$1 dir=$tmp/play-$1 name tag
  name=${SHMBROKER_IMAGE%:*}; tag=${SHMBROKER_IMAGE##*:}
  [[ $SHMBROKER_IMAGE == *:* && $tag != */* ]] || { name=$SHMBROKER_IMAGE; tag=latest; }
  mkdir -p "$dir"
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namePrefix: $prefix
resources:
  - $(realpath --relative-to="$dir" "$k8s/overlays/$overlay")
images:
  - name: shmbroker
    newName: $name
    newTag: "$tag"
EOF
  kubectl kustomize "$dir" >"$2" || die "kubectl kustomize $dir"
}

kube_play() {
  played+=("$1")
  # Health-check timers need systemd, which these machines do not run:
  # podman logs that and goes on. It also logs an error after removing an
  # init container that ran once (podman issue 16697, fixed after 4.3).
  podman kube play "$1" >/dev/null 2> >(grep -v -e 'systemd connection' -e 'from database: no container' >&2) ||
    die "podman kube play $1"
}

wait_running() {  # container...
  local c
  for _ in $(seq 150); do
    local all=1
    for c in "$@"; do
      [[ $(podman container inspect -f '{{.State.Status}}' "$c" 2>/dev/null) == running ]] || all=0
    done
    [[ $all == 1 ]] && return 0
    sleep 0.2
  done
  for c in "$@"; do podman logs "$c" 2>&1 | tail -n 20 || true; done
  die "containers not all running: $*"
}

wait_serving() {  # container to exec in
  for _ in $(seq 150); do
    podman exec "$1" shmbroker health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  podman exec "$1" shmbroker health || true
  die "shmbroker health in $1 never answered SERVING"
}

play_sidecar() {
  local file=$tmp/play-sidecar.yaml pod daemon worker out hc pid
  play_kustomization sidecar "$file"
  log "podman kube play: sidecar overlay"
  kube_play "$file"
  pod=${prefix}worker-pod-0
  daemon=$pod-shmbrokerd
  worker=$pod-worker
  wait_running "$daemon" "$worker"
  log "the worker reaches its sidecar daemon"
  wait_serving "$worker"
  podman exec "$worker" shmbroker health
  podman exec "$worker" id
  out=$(podman exec "$worker" shmbroker --json status)
  echo "  status: $out"
  [[ $out == *'"capacity_bytes":1073741824'* ]] ||
    die "capacity is not FLAGS_capacity=1GiB from the ConfigMap (--tryfromenv)"

  log "a buffer from one worker process to another, through the daemon"
  # The reader waits for the seal: a buffer is visible from its Allocate on,
  # before put has written it (a cat polled until the name appeared could
  # read it still empty).
  out=$(podman exec "$worker" sh -c '
    echo sidecar-smoke | shmbroker put smoke --seal --hold=60s >/dev/null 2>&1 &
    got=$(shmbroker get smoke --wait=30s --sealed 2>&1)
    kill $! 2>/dev/null; echo "$got"')
  [[ $out == sidecar-smoke ]] || die "read back '$out', want 'sidecar-smoke'"
  echo "  read back: $out"

  log "what podman made of the probes"
  hc=$(podman container inspect -f '{{json .Config.Healthcheck.Test}}' "$daemon")
  echo "  shmbrokerd health check (from livenessProbe): $hc"
  [[ $hc == *shmbroker*health* ]] || die "livenessProbe did not become the container's health check"
  out=$(podman healthcheck run "$daemon" 2>&1) || die "health check failed: $out"
  echo "  podman healthcheck run: ${out:-healthy}"
  pid=$(podman container inspect -f '{{.State.Pid}}' "$daemon")
  kill -STOP "$pid"
  if out=$(podman healthcheck run "$daemon" 2>&1); then
    kill -CONT "$pid"; die "health check passed with the daemon frozen"
  fi
  kill -CONT "$pid"
  echo "  daemon frozen (SIGSTOP): health check fails: $out"
  wait_serving "$worker"

  podman kube down "$file" >/dev/null 2>&1 || die "podman kube down $file"
  podman pod exists "$pod" && die "pod $pod still there after kube down"
  log "sidecar pod: PASS"
}

play_daemonset() {
  local rendered=$tmp/play-daemonset-rendered.yaml file=$tmp/play-daemonset.yaml
  local pod daemon host_dir st out
  play_kustomization daemonset "$rendered"
  mkdir -p "$tmp/host"
  node "$validator/daemonset-to-pod.js" "$rendered" "$tmp/host" >"$file"
  log "podman kube play: the DaemonSet's pod (hostPath under a scratch directory)"
  kube_play "$file"
  pod=${prefix}shmbrokerd
  daemon=$pod-shmbrokerd
  wait_running "$daemon"
  wait_serving "$daemon"
  host_dir=$tmp/host/run/shmbroker
  st=$(stat -c '%u:%g %a' "$host_dir")
  echo "  host directory $host_dir: $st"
  [[ $st == "10001:10001 750" ]] || die "the init container did not make the hostPath 10001:10001 0750"
  ls -ln "$host_dir" | sed 's/^/  /'
  [[ -S $host_dir/broker.sock ]] || die "no socket on the host side of the hostPath"
  podman exec "$daemon" shmbroker --json status | grep -q '"capacity_bytes":8589934592' ||
    die "capacity is not the daemonset overlay's FLAGS_capacity=8GiB"
  # Another pod on the node, as deploy/k8s/examples/daemonset-worker.yaml
  # has it: uid 20000, group 10001, the hostPath mounted. (kube play ignores
  # supplementalGroups, so this one is a plain container.)
  out=$(podman run --rm --no-healthcheck --user 20000:20000 --group-add 10001 \
    -v "$host_dir:/run/shmbroker" --entrypoint shmbroker "$SHMBROKER_IMAGE" health 2>&1) ||
    die "a worker container could not reach the daemon through the hostPath: $out"
  echo "  a worker in another container, through the hostPath: $out"
  podman kube down "$file" >/dev/null 2>&1 || die "podman kube down $file"
  log "daemonset pod: PASS"
}

t0=$SECONDS
if [[ $mode == validate || $mode == all ]]; then
  validate_manifests
fi
if [[ $mode == play || $mode == all ]]; then
  setup_podman
  require_tools kubectl node
  validator_modules
  prefix=shmb-it-$$-
  if [[ ${SHMBROKER_IMAGE_READY:-0} == 1 ]]; then
    podman image exists "$SHMBROKER_IMAGE" || die "SHMBROKER_IMAGE_READY=1 but $SHMBROKER_IMAGE does not exist"
  else
    ensure_base_image
    build_image
  fi
  play_sidecar
  play_daemonset
fi
log "check_k8s $mode: PASS in $((SECONDS - t0)) s"
