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

/**
 * idgate_identity_capture() - Capture the identity of current.
 * @id: filled; pair with idgate_identity_release()
 *
 * Never fails: parts that cannot be read are left empty and flagged
 * (IDGATE_RESULT_EXE_TRUNC, IDGATE_RESULT_CG_TRUNC).
 *
 * Context: the connecting task, atomic context.
 */
void idgate_identity_capture(struct idgate_identity *id);
void idgate_identity_release(struct idgate_identity *id);
/**
 * idgate_identity_fill() - Translate an identity for the caller.
 * @id: a captured identity
 * @out: its "out" fields are filled as current sees them (its pid and user
 *       namespaces), all but exe_dev and exe_ino
 *
 * Context: does not sleep; callable under RCU.
 */
void idgate_identity_fill(const struct idgate_identity *id, struct idgate_lookup *out);
/**
 * idgate_identity_fill_exe_id() - Fill the executable's device and inode.
 * @exe_file: the executable's file, or NULL (nothing is filled)
 * @out: exe_dev and exe_ino are set as stat(2) reports them, and
 *       IDGATE_RESULT_EXE_ID in result_flags
 *
 * Context: process context; may sleep (the filesystem's getattr).
 */
void idgate_identity_fill_exe_id(struct file *exe_file, struct idgate_lookup *out);

#endif
