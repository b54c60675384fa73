#!/bin/sh
# criu-dump.sh: checkpoint a running process tree with CRIU (4.1 or newer).
#
#   criu-dump.sh [--leave-running] PIDFILE IMAGES_DIR [-- CRIU_DUMP_ARGS...]
#
# Freezes the tree rooted at the pid in PIDFILE and dumps it into IMAGES_DIR. Without
# --leave-running CRIU kills the tree once the dump is complete (the freeze before a
# migration); with it the tree goes on running (a periodic checkpoint). Arguments after `--`
# go to `criu dump` as they are (e.g. --shell-job, --tcp-established, --file-locks, -v4).
#
# The dump is written to IMAGES_DIR.partial and moved to IMAGES_DIR only when CRIU succeeded,
# so a failed dump leaves the previous checkpoint intact. CRIU's log is IMAGES_DIR/dump.log.
#
# Environment: CRIU (program, default criu on PATH), CRIU_SKIP_CHECK=1 (skip `criu check`),
# RECIPE_STATE_DIR, and the QUORATE_* variables of the exec actuator (see README.md).
# Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

usage() {
	die "$EX_USAGE" "usage: $RECIPE [--leave-running] PIDFILE IMAGES_DIR [-- CRIU_DUMP_ARGS...]"
}

leave_running=
while [ $# -gt 0 ]; do
	case $1 in
	--leave-running) leave_running=--leave-running ;;
	--) break ;;
	-*) usage ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 2 ] || usage
pidfile=$1
images=$(absolute "${2%/}")
shift 2
if [ $# -gt 0 ]; then
	[ "$1" = -- ] || usage
	shift
fi
partial=$images.partial
mode=${leave_running:+left running}
mode=${mode:-killed after the dump}

exit_if_done
check_state_dir
check_criu

# Puts a completed dump in place: IMAGES_DIR.partial becomes IMAGES_DIR.
publish() {
	rm -rf -- "$images.prev" || die "$EX_FAILED" "cannot remove $images.prev"
	if [ -e "$images" ]; then
		mv -- "$images" "$images.prev" || die "$EX_FAILED" "cannot move $images aside"
	fi
	mv -- "$partial" "$images" || die "$EX_FAILED" "cannot move $partial to $images"
	rm -rf -- "$images.prev"
}

# A retry after a crash: the earlier attempt with this key dumped and killed the tree, but
# did not record it.
if started_earlier && [ -z "$leave_running" ]; then
	pid=$(sed -n '1{s/[[:space:]]//g;p;}' "$pidfile" 2>/dev/null)
	if [ -n "$pid" ] && ! alive "$pid"; then
		if [ -f "$partial/inventory.img" ] && not_older "$partial/inventory.img" "$MARKER.started"; then
			is_dry_run && {
				say "dry run: an earlier attempt completed the dump into $partial: would move it to $images"
				exit "$EX_OK"
			}
			publish
		fi
		if [ -f "$images/inventory.img" ] && not_older "$images/inventory.img" "$MARKER.started"; then
			is_dry_run && {
				say "dry run: an earlier attempt dumped pid $pid into $images: nothing would be done"
				exit "$EX_OK"
			}
			mark_done "dumped pid $pid into $images ($mode; found after a retry)"
			say "pid $pid was dumped into $images by an earlier attempt ($(context))"
			exit "$EX_OK"
		fi
	fi
fi

pid=$(live_pid_from "$pidfile") || exit $?
parent=$(dirname -- "$images")
[ -d "$parent" ] || die "$EX_NOT_FOUND" "$parent does not exist: create it (the images go to $images)"
[ -w "$parent" ] || die "$EX_USAGE" "$parent is not writable (the images go to $images)"

if is_dry_run; then
	say "dry run: CRIU $CRIU_VERSION ($CRIU_BIN) passes 'criu check'; process $pid" \
		"($(proc_name "$pid")) is running; would run: criu dump --tree $pid --images-dir" \
		"$partial --log-file dump.log${leave_running:+ $leave_running}${*:+ $*}, then move it" \
		"to $images ($mode)"
	exit "$EX_OK"
fi

mark_started "$pidfile $images $leave_running $*"
if ! { rm -rf -- "$partial" && mkdir -p -- "$partial"; }; then
	die "$EX_FAILED" "cannot create $partial"
fi
say "dumping pid $pid ($(proc_name "$pid")) with CRIU $CRIU_VERSION into $images ($mode)"
# shellcheck disable=SC2086 # leave_running is one word or nothing
if ! "$CRIU_BIN" dump --tree "$pid" --images-dir "$partial" --log-file dump.log \
	$leave_running "$@"; then
	log_tail "$partial/dump.log"
	die "$EX_FAILED" "criu dump of pid $pid failed; the previous checkpoint in $images is" \
		"untouched; CRIU's log: $partial/dump.log"
fi
[ -f "$partial/inventory.img" ] || die "$EX_FAILED" "criu dump exited 0 but wrote no" \
	"inventory.img into $partial"
publish
mark_done "dumped pid $pid into $images ($mode)"
say "dumped pid $pid into $images ($mode; $(context))"
