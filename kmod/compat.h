/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernel lines idgate.ko supports (6.1 .. 6.12, see
 * kmod/matrix/window.conf). Each guard names the upstream release that made
 * it necessary; the support matrix build proves every side of each guard.
 */
#ifndef _IDGATE_COMPAT_H
#define _IDGATE_COMPAT_H

#include <linux/fs.h>
#include <linux/mm_types.h>
#include <linux/rcupdate.h>
#include <linux/version.h>

/*
 * A counted reference to @mm's executable, or NULL. Since 6.7 struct file is
 * SLAB_TYPESAFE_BY_RCU: get_file_rcu() takes the __rcu pointer itself and
 * rechecks it after taking the reference, since a freed file can be reused
 * at once. Before 6.7 files were freed after a grace period, so a reference
 * taken under rcu_read_lock() on a non-zero count was enough. (Neither
 * get_mm_exe_file() nor get_task_exe_file() is exported to modules.)
 */
static inline struct file *idgate_mm_exe_file(struct mm_struct *mm)
{
	struct file *exe;

	rcu_read_lock();
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	exe = get_file_rcu(&mm->exe_file);
#else
	exe = rcu_dereference(mm->exe_file);
	if (exe && !get_file_rcu(exe))
		exe = NULL;
#endif
	rcu_read_unlock();
	return exe;
}

/*
 * no_llseek was removed in 6.12: a NULL .llseek on a file opened with
 * nonseekable_open() fails seeks with ESPIPE, as no_llseek did.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#define IDGATE_NO_LLSEEK
#else
#define IDGATE_NO_LLSEEK .llseek = no_llseek,
#endif

#endif
