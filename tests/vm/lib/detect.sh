# Kernel reports on a VM console, each named by the detector that made it
# (sourced). detect_reports FILE prints "DETECTOR: first line" per report and
# returns the number found; DETECT_IGNORE (a file of "function reason" lines,
# kmod/debug/kcsan.supp) suppresses KCSAN reports naming one of its functions.
detect_reports() {
	local console=$1
	tr -d '\r' < "$console" | grep -vE '^(PASS|FAIL|vm|dmesg|kmemleak-suppressed): ' | awk -v supp="${DETECT_IGNORE:-/dev/null}" '
		BEGIN {
			while ((getline l < supp) > 0) if (l !~ /^#/ && split(l, f, " ") >= 2) sup[f[1]] = l
			n = 0
		}
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
				if (index($0, " " fn " ") || index($0, " " fn "\r") || $0 ~ (" " fn "$")) {
					print "suppressed KCSAN report (" sup[fn] "): " $0 > "/dev/stderr"
					name = ""
					break
				}
		}
		name != "" { print name ": " $0; n++ }
		END { exit n > 255 ? 255 : n }'
}
