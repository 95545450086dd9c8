# Sourced by scripts/test and scripts/demo. quiet_build WHAT ARGS...: runs `swift build ARGS`,
# shows what matters of its output (not the progress lines), and stops the calling script with a
# non-zero exit when the build fails, whatever the filter printed. With `set -o pipefail` the
# pipeline's status is the build's: the filter's own status never hides it.
quiet_build() {
    local what=$1
    shift
    set -o pipefail
    if ! swift build "$@" 2>&1 \
        | { grep -vE '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Linking|Write|Wrapping|Build|Planning|Applying)|^Building for |^Build (of product .* )?complete' || true; }; then
        echo "$(basename "$0"): building $what failed (see above)" >&2
        exit 1
    fi
}
