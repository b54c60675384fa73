#!/bin/sh
# criu-discard.sh: undo criu-restore.sh: kill the restored tree.
#
#   criu-discard.sh RESTORED_PIDFILE
#
# Kills (SIGKILL) the restored root whose pid is in RESTORED_PIDFILE and every process below
# it, then removes RESTORED_PIDFILE. Nothing running means nothing to discard: success. The
# checkpoint images are kept. Use it as the compensation of a criu-restore.sh step.
#
# Environment: RECIPE_STATE_DIR and the QUORATE_* variables of the exec actuator (see
# README.md). Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

[ $# -eq 1 ] || die "$EX_USAGE" "usage: $RECIPE RESTORED_PIDFILE"
pidfile=$1

exit_if_done
check_state_dir

pid=
if [ -f "$pidfile" ]; then
	pid=$(sed -n '1{s/[[:space:]]//g;p;}' "$pidfile")
	case $pid in '' | *[!0-9]*) pid= ;; esac
fi
if [ -z "$pid" ] || ! alive "$pid"; then
	if is_dry_run; then
		say "dry run: no restored process runs (${pid:+pid $pid from }$pidfile): nothing would be done"
	else
		rm -f -- "$pidfile"
		mark_done "no restored process was running"
		say "no restored process runs (${pid:+pid $pid from }$pidfile): nothing to discard ($(context))"
	fi
	exit "$EX_OK"
fi

tree=$(tree_pids "$pid" | tr '\n' ' ')
if is_dry_run; then
	say "dry run: would kill pid $pid ($(proc_name "$pid")) and its tree: $tree"
	exit "$EX_OK"
fi

mark_started "$pidfile"
# Stop them all first so that none reacts to the others' death, then kill.
for p in $tree; do kill -STOP "$p" 2>/dev/null; done
for p in $tree; do kill -KILL "$p" 2>/dev/null; done
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	alive "$pid" || break
	sleep 0.1
done
alive "$pid" && die "$EX_FAILED" "pid $pid survived SIGKILL"
rm -f -- "$pidfile"
mark_done "killed pid $pid and its tree: $tree"
say "discarded pid $pid and its tree: $tree($(context))"
