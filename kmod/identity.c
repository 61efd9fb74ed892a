// SPDX-License-Identifier: GPL-2.0
/*
 * Capture of a task's identity at connect() time, and its translation into
 * the namespaces of the process that looks it up.
 */
#include <linux/cgroup.h>
#include <linux/cred.h>
#include <linux/dcache.h>
#include <linux/err.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kdev_t.h>
#include <linux/mm_types.h>
#include <linux/rcupdate.h>
#include <linux/sched/signal.h>
#include <linux/stat.h>
#include <linux/string.h>
#include <linux/timekeeping.h>
#include <linux/user_namespace.h>

#include "compat.h"
#include "identity.h"

/*
 * current's executable (a reference, kept for its device and inode, see
 * idgate_identity_fill_exe_id()) and its path relative to current's root.
 */
static void capture_exe(struct idgate_identity *id)
{
	struct mm_struct *mm = current->mm;
	struct file *exe = NULL;
	char *p;

	id->exe[0] = '\0';
	id->exe_file = NULL;
	if (mm)
		exe = idgate_mm_exe_file(mm);
	if (!exe) {
		id->flags |= IDGATE_RESULT_EXE_TRUNC;
		return;
	}
	id->exe_file = exe;
	p = d_path(&exe->f_path, id->exe, sizeof(id->exe));
	if (IS_ERR(p)) {
		id->exe[0] = '\0';
		id->flags |= IDGATE_RESULT_EXE_TRUNC;
		return;
	}
	memmove(id->exe, p, strlen(p) + 1);
}

/* cgroup v2 id and path (from the hierarchy root) of current. */
static void capture_cgroup(struct idgate_identity *id)
{
	struct cgroup *cgrp;
	int len;

	rcu_read_lock();
	cgrp = task_dfl_cgroup(current);
	id->cgroup_id = cgroup_id(cgrp);
	len = cgroup_path(cgrp, id->cgroup, sizeof(id->cgroup));
	rcu_read_unlock();
	if (len < 0) {
		id->cgroup[0] = '\0';
		id->flags |= IDGATE_RESULT_CG_TRUNC;
	} else if (len >= (int)sizeof(id->cgroup)) {
		id->flags |= IDGATE_RESULT_CG_TRUNC;
	}
}

void idgate_identity_capture(struct idgate_identity *id)
{
	const struct cred *cred = current_cred();

	id->flags = 0;
	id->tgid = get_pid(task_tgid(current));
	id->pid = get_pid(task_pid(current));
	id->uid = cred->euid;
	id->gid = cred->egid;
	id->start_time_ns = current->group_leader->start_boottime;
	id->record_time_ns = ktime_get_boottime_ns();
	/*
	 * The process's name, as /proc/<tgid>/comm has it (a thread's own
	 * name, e.g. a worker pool's, would not select the same workload
	 * as the procfs backend does).
	 */
	get_task_comm(id->comm, current->group_leader);
	capture_exe(id);
	capture_cgroup(id);
}

/*
 * From an RCU callback too: fput() defers the final release to a work item
 * outside task context.
 */
void idgate_identity_release(struct idgate_identity *id)
{
	if (id->exe_file)
		fput(id->exe_file);
	id->exe_file = NULL;
	put_pid(id->pid);
	put_pid(id->tgid);
	id->pid = NULL;
	id->tgid = NULL;
}

static bool process_exited(struct pid *tgid)
{
	struct task_struct *task;
	bool exited;

	rcu_read_lock();
	task = pid_task(tgid, PIDTYPE_TGID);
	exited = !task || task->exit_state || (task->flags & PF_EXITING);
	rcu_read_unlock();
	return exited;
}

void idgate_identity_fill(const struct idgate_identity *id, struct idgate_lookup *out)
{
	struct user_namespace *ns = current_user_ns();

	out->tgid = pid_vnr(id->tgid);
	out->pid = pid_vnr(id->pid);
	out->uid = from_kuid_munged(ns, id->uid);
	out->gid = from_kgid_munged(ns, id->gid);
	out->result_flags = id->flags;
	if (process_exited(id->tgid))
		out->result_flags |= IDGATE_RESULT_EXITED;
	out->pad1 = 0;
	out->start_time_ns = id->start_time_ns;
	out->cgroup_id = id->cgroup_id;
	out->record_time_ns = id->record_time_ns;
	BUILD_BUG_ON(sizeof(out->comm) != sizeof(id->comm));
	BUILD_BUG_ON(sizeof(out->exe) != sizeof(id->exe));
	BUILD_BUG_ON(sizeof(out->cgroup) != sizeof(id->cgroup));
	strscpy_pad((char *)out->comm, id->comm, sizeof(out->comm));
	strscpy_pad((char *)out->exe, id->exe, sizeof(out->exe));
	strscpy_pad((char *)out->cgroup, id->cgroup, sizeof(out->cgroup));
}

/*
 * The device and inode that stat(2) of the executable reports in userspace,
 * taken from the file the process runs (not from its path, which a mount
 * namespace can point at another file). The filesystem's getattr gives them,
 * not the inode's superblock: btrfs reports each subvolume's anonymous device
 * (inode numbers repeat across subvolumes), overlayfs a device and inode
 * mapped from its layers. AT_STATX_DONT_SYNC: network and FUSE filesystems
 * answer from their cache instead of asking a server the lookup would wait on.
 */
void idgate_identity_fill_exe_id(struct file *exe_file, struct idgate_lookup *out)
{
	struct kstat st;

	if (!exe_file || vfs_getattr_nosec(&exe_file->f_path, &st, STATX_INO, AT_STATX_DONT_SYNC))
		return;
	out->exe_dev = new_encode_dev(st.dev);
	out->exe_ino = st.ino;
	out->result_flags |= IDGATE_RESULT_EXE_ID;
}
