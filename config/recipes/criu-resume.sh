#!/bin/sh
# criu-resume.sh: let a tree restored with criu-restore.sh --leave-stopped run.
#
#   criu-resume.sh RESTORED_PIDFILE
#
# Sends SIGCONT to the restored root (its pid is in RESTORED_PIDFILE, written by
# criu-restore.sh) and to every process below it. A tree that already runs is left alone.
#
# Environment: RECIPE_STATE_DIR and the QUORATE_* variables of the exec actuator (see
# README.md). Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

[ $# -eq 1 ] || die "$EX_USAGE" "usage: $RECIPE RESTORED_PIDFILE"
pidfile=$1

exit_if_done
check_state_dir
pid=$(live_pid_from "$pidfile") || exit $?

stopped=
for p in $(tree_pids "$pid"); do
	case $(proc_state "$p") in
	T | t) stopped="$stopped $p" ;;
	esac
done

if [ -z "$stopped" ]; then
	if is_dry_run; then
		say "dry run: pid $pid ($(proc_name "$pid")) and its children already run: nothing would be done"
	else
		mark_done "pid $pid was already running"
		say "pid $pid ($(proc_name "$pid")) already runs ($(context))"
	fi
	exit "$EX_OK"
fi
if is_dry_run; then
	say "dry run: would send SIGCONT to the stopped processes of pid $pid's tree:$stopped"
	exit "$EX_OK"
fi

mark_started "$pidfile"
for p in $stopped; do
	kill -CONT "$p" 2>/dev/null || warn "process $p went away before SIGCONT"
done
alive "$pid" || die "$EX_FAILED" "pid $pid exited when it was resumed"
mark_done "resumed pid $pid (SIGCONT to$stopped)"
say "resumed pid $pid ($(proc_name "$pid")):$stopped ($(context))"
