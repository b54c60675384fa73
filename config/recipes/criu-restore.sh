#!/bin/sh
# criu-restore.sh: restore a process tree from a CRIU (4.1 or newer) checkpoint.
#
#   criu-restore.sh [--leave-stopped] [--pidfile FILE] IMAGES_DIR [-- CRIU_RESTORE_ARGS...]
#
# Restores the tree dumped into IMAGES_DIR (by criu-dump.sh) detached from this script, and
# writes the restored root's pid to FILE (default IMAGES_DIR/restored.pid). With
# --leave-stopped every restored task stays stopped until criu-resume.sh FILE continues it
# (restore, move the service address, then resume); criu-discard.sh FILE undoes a restore.
# Arguments after `--` go to `criu restore` as they are (e.g. --shell-job,
# --tcp-established, -v4). CRIU's log is IMAGES_DIR/restore.log.
#
# Never two copies: when FILE names a live process, a retry of the same step (same
# idempotency key) takes it as its own earlier restore; any other call refuses (exit 7).
#
# Environment: CRIU (program, default criu on PATH), CRIU_SKIP_CHECK=1 (skip `criu check`),
# RECIPE_STATE_DIR, and the QUORATE_* variables of the exec actuator (see README.md).
# Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

usage() {
	die "$EX_USAGE" "usage: $RECIPE [--leave-stopped] [--pidfile FILE] IMAGES_DIR" \
		"[-- CRIU_RESTORE_ARGS...]"
}

leave_stopped=
restored_pidfile=
while [ $# -gt 0 ]; do
	case $1 in
	--leave-stopped) leave_stopped=--leave-stopped ;;
	--pidfile)
		[ $# -ge 2 ] || usage
		restored_pidfile=$2
		shift
		;;
	--) break ;;
	-*) usage ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 1 ] || usage
images=$(absolute "${1%/}")
shift
if [ $# -gt 0 ]; then
	[ "$1" = -- ] || usage
	shift
fi
restored_pidfile=$(absolute "${restored_pidfile:-$images/restored.pid}")
state=${leave_stopped:+stopped}
state=${state:-running}

exit_if_done
check_state_dir
check_criu

[ -f "$images/inventory.img" ] || die "$EX_NOT_FOUND" "no complete checkpoint in $images" \
	"(inventory.img missing): dump one there first (criu-dump.sh)"
[ -w "$images" ] || die "$EX_USAGE" "$images is not writable (CRIU writes restore.log there)"

# A restored copy already running.
if [ -f "$restored_pidfile" ]; then
	old=$(sed -n '1{s/[[:space:]]//g;p;}' "$restored_pidfile")
	case $old in '' | *[!0-9]*) old= ;; esac
	if [ -n "$old" ] && alive "$old"; then
		if started_earlier; then
			is_dry_run && {
				say "dry run: an earlier attempt restored $images as pid $old: nothing would be done"
				exit "$EX_OK"
			}
			mark_done "restored $images as pid $old (found after a retry)"
			say "an earlier attempt restored $images as pid $old ($(context))"
			exit "$EX_OK"
		fi
		die "$EX_CONFLICT" "a restored copy already runs as pid $old ($(proc_name "$old"), from" \
			"$restored_pidfile): resume it (criu-resume.sh) or discard it (criu-discard.sh) first"
	fi
fi

if is_dry_run; then
	say "dry run: CRIU $CRIU_VERSION ($CRIU_BIN) passes 'criu check'; $images holds a" \
		"checkpoint; would run: criu restore --images-dir $images --restore-detached --pidfile" \
		"$restored_pidfile --log-file restore.log${leave_stopped:+ $leave_stopped}${*:+ $*}" \
		"(restored tree left $state)"
	exit "$EX_OK"
fi

mark_started "$images $restored_pidfile $leave_stopped $*"
rm -f -- "$restored_pidfile"
say "restoring $images with CRIU $CRIU_VERSION (left $state)"
# shellcheck disable=SC2086 # leave_stopped is one word or nothing
if ! "$CRIU_BIN" restore --images-dir "$images" --restore-detached \
	--pidfile "$restored_pidfile" --log-file restore.log $leave_stopped "$@" \
	</dev/null >/dev/null; then
	log_tail "$images/restore.log"
	die "$EX_FAILED" "criu restore from $images failed; CRIU's log: $images/restore.log"
fi
pid=$(live_pid_from "$restored_pidfile") || die "$EX_FAILED" "criu restore exited 0 but no" \
	"restored process is running (see $images/restore.log)"
mark_done "restored $images as pid $pid ($state)"
say "restored $images as pid $pid ($(proc_name "$pid"), $state; $(context))"
