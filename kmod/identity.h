/* SPDX-License-Identifier: GPL-2.0 */
/* The identity of the task that opened a flow, captured at connect(). */
#ifndef _IDGATE_IDENTITY_H
#define _IDGATE_IDENTITY_H

#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/types.h>
#include <linux/uidgid.h>
#include <uapi/idgate.h>

struct idgate_identity {
	struct pid *tgid;		/* reference: the process */
	struct file *exe_file;		/* reference: its executable, or NULL */
	struct pid *pid;		/* reference: the thread that called connect() */
	kuid_t uid;			/* effective */
	kgid_t gid;			/* effective */
	u64 start_time_ns;		/* process start, CLOCK_BOOTTIME */
	u64 record_time_ns;		/* CLOCK_BOOTTIME */
	u64 cgroup_id;
	u32 flags;			/* IDGATE_RESULT_*_TRUNC */
	char comm[TASK_COMM_LEN];
	char exe[IDGATE_PATH_LEN];
	char cgroup[IDGATE_PATH_LEN];
};

/*
 * Capture current's identity; atomic context, never fails (missing parts
 * are left empty and flagged). Pair with idgate_identity_release().
 */
void idgate_identity_capture(struct idgate_identity *id);
void idgate_identity_release(struct idgate_identity *id);
/*
 * Fill the "out" fields of @out as seen by current (pid and user
 * namespaces of the caller), all but the executable's device and inode.
 * Must not sleep: callable under RCU.
 */
void idgate_identity_fill(const struct idgate_identity *id, struct idgate_lookup *out);
/*
 * Fill exe_dev and exe_ino of @out from @exe_file (may be NULL) as stat(2)
 * reports them, and flag them valid. May sleep.
 */
void idgate_identity_fill_exe_id(struct file *exe_file, struct idgate_lookup *out);

#endif
