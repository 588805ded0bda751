#!/usr/bin/env bash
# Runs the Secret Service tests of the `session` test binary against a real
# gnome-keyring on a private D-Bus session bus, never the developer's own:
# once with the keyring unlocked (hoist must prefer it and keep sessions
# there) and once with it never unlocked (hoist must say it is locked).
# Needs dbus-run-session and gnome-keyring-daemon (scripts/test installs both).
# Extra arguments go to cargo nextest.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${HOIST_SECRET_SERVICE_PHASE:-}" ]; then
  for phase in unlocked locked; do
    HOIST_SECRET_SERVICE_PHASE=$phase dbus-run-session -- "$0" "$@"
  done
  exit 0
fi

# Inside dbus-run-session: a fresh keyring folder per run, because an unlock
# with a different password "succeeds" on an old folder and later calls fail.
scratch=$(mktemp -d)
trap 'kill "${GNOME_KEYRING_PID:-}" 2>/dev/null || true; rm -rf "$scratch"' EXIT
export XDG_DATA_HOME="$scratch/data" XDG_RUNTIME_DIR="$scratch/run"
mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"

case "$HOIST_SECRET_SERVICE_PHASE" in
  unlocked)
    eval "$(printf '%s' "hoist-test-$$" | gnome-keyring-daemon --unlock --components=secrets)"
    test_name='secret_service::real_secret_service_is_preferred_and_keeps_the_session'
    ;;
  locked)
    eval "$(gnome-keyring-daemon --start --components=secrets)"
    test_name='secret_service::a_locked_secret_service_is_refused_with_a_plain_reason'
    ;;
  *)
    echo "secret-service.sh: unknown phase $HOIST_SECRET_SERVICE_PHASE" >&2
    exit 2
    ;;
esac
export GNOME_KEYRING_CONTROL
export HOIST_TEST_SECRET_SERVICE="$HOIST_SECRET_SERVICE_PHASE"
# The tests choose the backend themselves; a developer's override must not leak in.
unset HOIST_KEYRING

cargo nextest run -p hoist --test session --run-ignored only -E "test(=$test_name)" "$@"
