# npm packages for the deploy tests' validators, installed with `npm ci` from
# a checked-in package-lock.json into a cache outside the tree
# (SHMBROKER_NPM_CACHE, default ~/.cache/shmbroker), one directory per lock
# file, reused by later runs. Needs the npm registry the first time only.
# Source after podman_lib.sh (for log, die, require_tools).

# npm_modules DIR: installs DIR's packages; sets npm_modules_dir to the
# directory whose node_modules hold them.
npm_modules() {
  require_tools node npm
  local dir=$1 key cache
  key=$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -c1-16)
  cache=${SHMBROKER_NPM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/shmbroker}/$(basename "$dir")-$key
  mkdir -p "$(dirname "$cache")"
  (
    # Two test runs at once must not both install into the same directory.
    flock 9
    if [[ ! -f $cache/.complete ]]; then
      log "npm ci into $cache" >&2
      rm -rf "$cache" && mkdir -p "$cache"
      cp "$dir/package.json" "$dir/package-lock.json" "$cache/"
      (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci failed"
      touch "$cache/.complete"
    fi
  ) 9>"$cache.lock"
  npm_modules_dir=$cache
}
