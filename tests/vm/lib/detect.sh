# shellcheck shell=bash
# Kernel reports on a VM console, each named by the detector that made it
# (sourced). detect_reports FILE prints one line per report, "DETECTOR: first
# line", or "DETECTOR [idgate]: first line" when the report's next lines (its
# stack, held locks, backtrace) name the module, and returns the number found.
# DETECT_IGNORE (a file of "function reason" lines, kmod/debug/kcsan.supp)
# suppresses KCSAN reports naming one of its functions. detect_boot_reports
# FILE prints those that came before the suite started (the module not loaded).
detect_reports() {
	local console=$1
	tr -d '\r' < "$console" | { grep -vE '^(PASS|FAIL|dmesg|kmemleak-suppressed): ' || true; } |
		awk -v supp="${DETECT_IGNORE:-/dev/null}" -v boot_only="${DETECT_BOOT_ONLY:-0}" '
		BEGIN {
			while ((getline l < supp) > 0) if (l !~ /^#/ && split(l, f, " ") >= 2) sup[f[1]] = l
			n = 0
		}
		/^vm: booted/ { booted = 1 }
		{ name = "" }
		name == "" && /BUG: KASAN:/ { name = "KASAN" }
		name == "" && /BUG: KFENCE:/ { name = "KFENCE" }
		name == "" && /BUG: KCSAN:/ { name = "KCSAN" }
		name == "" && /WARNING: (possible circular locking|possible recursive locking|lock held when returning to user space|bad unlock balance|inconsistent lock state|suspicious RCU usage|held lock freed|possible irq lock inversion|Nested lock was not taken)/ { name = "lockdep" }
		name == "" && /BUG: (sleeping function called from invalid context|scheduling while atomic)/ { name = "atomic-sleep" }
		name == "" && /unreferenced object 0x|new suspected memory leaks/ { name = "kmemleak" }
		name == "" && /ODEBUG:/ { name = "debugobjects" }
		name == "" && /INFO: task .* blocked for more than/ { name = "hung-task" }
		name == "" && /soft lockup/ { name = "soft-lockup" }
		name == "" && /Objects remaining in .* on __kmem_cache_shutdown/ { name = "SLUB" }
		name == "" && /BUG:|WARNING:|Oops|Kernel panic|general protection fault|refcount_t:/ { name = "kernel" }
		name == "KCSAN" {
			for (fn in sup)
				if (index($0, " " fn " ") || $0 ~ (" " fn "$")) {
					print "suppressed KCSAN report (" sup[fn] "): " $0 > "/dev/stderr"
					name = ""
					break
				}
		}
		name != "" {
			left = 0
			if (!boot_only || !booted) { n++; what[n] = name; first[n] = $0; left = 80 }
			next
		}
		# The lines after a report (up to the next one, 80 at most) say whether it is the module.
		n && left > 0 { left--; if (index($0, "[idgate]")) mod[n] = 1 }
		END {
			for (i = 1; i <= n; i++) print what[i] (mod[i] ? " [idgate]" : "") ": " first[i]
			exit n > 255 ? 255 : n
		}'
}

detect_boot_reports() { DETECT_BOOT_ONLY=1 detect_reports "$@"; }
