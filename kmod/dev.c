// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/idgate: version, configuration, lookup and counters, each for the
 * caller's network namespace. An open file holds a reference on the module
 * (fops.owner), so the module cannot be unloaded while any ioctl may run:
 * rmmod fails with EAGAIN until the last file is closed.
 */
#include <linux/capability.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/nsproxy.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <net/net_namespace.h>
#include <uapi/idgate.h>

#include "compat.h"
#include "config.h"
#include "dev.h"
#include "fault.h"
#include "flowtable.h"
#include "netns.h"
#include "proxies.h"
#include "stats.h"
#include "version.h"

static struct net *caller_net(void)
{
	return current->nsproxy->net_ns;
}

static bool caller_is_admin(void)
{
	return ns_capable(caller_net()->user_ns, CAP_NET_ADMIN);
}

static long ioc_version(void __user *arg)
{
	struct idgate_version v;

	memset(&v, 0, sizeof(v));
	v.api_version = IDGATE_API_VERSION;
	strscpy((char *)v.module_version, IDGATE_MODULE_VERSION, sizeof(v.module_version));
	return copy_to_user(arg, &v, sizeof(v)) ? -EFAULT : 0;
}

static long ioc_config(struct idgate_client *c, void __user *arg)
{
	struct idgate_config u;

	if (copy_from_user(&u, arg, sizeof(u)))
		return -EFAULT;
	return idgate_cfg_set(idgate_pernet(caller_net()), c, &u);
}

static long ioc_get_config(const struct idgate_client *c, void __user *arg)
{
	struct idgate_config u;
	long ret;

	if (copy_from_user(&u, arg, sizeof(u)))
		return -EFAULT;
	ret = idgate_cfg_get(idgate_pernet(caller_net()), c, &u);
	if (!ret && copy_to_user(arg, &u, sizeof(u)))
		ret = -EFAULT;
	return ret;
}

/* Build the table key from the "in" fields of @req. */
static int lookup_key(const struct idgate_lookup *req, struct idgate_flow_key *key)
{
	static const u8 zero[12];

	if (req->flags & ~IDGATE_LOOKUP_PEEK || req->pad0)
		return -EINVAL;
	if (req->family == AF_INET) {
		if (memcmp(req->src_addr + 4, zero, 12) || memcmp(req->dst_addr + 4, zero, 12))
			return -EINVAL;
	} else if (req->family != AF_INET6) {
		return -EINVAL;
	}
	memset(key, 0, sizeof(*key));
	key->family = req->family;
	memcpy(key->saddr, req->src_addr, 16);
	memcpy(key->daddr, req->dst_addr, 16);
	key->sport = req->src_port;
	key->dport = req->dst_port;
	return 0;
}

static long lookup(struct idgate_lookup *req)
{
	struct idgate_table *t = &idgate_pernet(caller_net())->table;
	struct idgate_flow_key key;
	struct idgate_flow *flow;
	int ret = lookup_key(req, &key);

	if (ret)
		return ret;
	/* Clear the "out" part: it starts at tgid. */
	memset((u8 *)req + offsetof(struct idgate_lookup, tgid), 0,
	       sizeof(*req) - offsetof(struct idgate_lookup, tgid));
	if (IDGATE_FAULT_LOOKUP_ERROR)
		return IDGATE_FAULT_LOOKUP_ERROR;
	if (req->flags & IDGATE_LOOKUP_PEEK) {
		struct file *exe_file;

		ret = idgate_table_peek(t, &key, req, &exe_file);
		if (exe_file) {
			idgate_identity_fill_exe_id(exe_file, req);
			fput(exe_file);
		}
		return ret;
	}

	idgate_stat_inc(lookups);
	flow = idgate_table_take(t, &key);
	if (!flow) {
		idgate_stat_inc(misses);
		idgate_fault_hold_cfg_mutex();
		return -ENOENT;
	}
	idgate_stat_inc(hits);
	idgate_fault_free_now(flow);
	rcu_read_lock();
	idgate_identity_fill(&flow->id, req);
	rcu_read_unlock();
	idgate_identity_fill_exe_id(flow->id.exe_file, req);
	if (!IDGATE_FAULT_SKIP_FREE)
		idgate_flow_free(flow);
	return 0;
}

static long ioc_lookup(void __user *arg)
{
	struct idgate_lookup *req = memdup_user(arg, sizeof(*req));
	long ret;

	if (IS_ERR(req))
		return PTR_ERR(req);
	ret = lookup(req);
	if (!ret && copy_to_user(arg, req, sizeof(*req)))
		ret = -EFAULT;
	kfree(req);
	return ret;
}

static long ioc_stats(void __user *arg)
{
	struct idgate_stats s;

	idgate_stats_fill(&s);
	return copy_to_user(arg, &s, sizeof(s)) ? -EFAULT : 0;
}

static long idgate_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	if (cmd == IDGATE_IOC_VERSION)
		return ioc_version(uarg);
	if (!caller_is_admin())
		return -EPERM;
	switch (cmd) {
	case IDGATE_IOC_CONFIG:
		return ioc_config(file->private_data, uarg);
	case IDGATE_IOC_GET_CONFIG:
		return ioc_get_config(file->private_data, uarg);
	case IDGATE_IOC_LOOKUP:
		return ioc_lookup(uarg);
	case IDGATE_IOC_STATS:
		return ioc_stats(uarg);
	default:
		return -ENOTTY;
	}
}

static int idgate_open(struct inode *inode, struct file *file)
{
	struct idgate_client *c = kzalloc(sizeof(*c), GFP_KERNEL);

	if (!c)
		return -ENOMEM;
	INIT_LIST_HEAD(&c->node);
	file->private_data = c;
	return nonseekable_open(inode, file);
}

/* The proxy this file named is no longer exempt. */
static int idgate_release(struct inode *inode, struct file *file)
{
	struct idgate_client *c = file->private_data;

	idgate_proxies_release(c);
	kfree(c);
	return 0;
}

static const struct file_operations idgate_fops = {
	.owner = THIS_MODULE,
	.open = idgate_open,
	.release = idgate_release,
	.unlocked_ioctl = idgate_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	IDGATE_NO_LLSEEK
};

static struct miscdevice idgate_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = IDGATE_DEVICE_NAME,
	.fops = &idgate_fops,
	.mode = 0600,
};

int idgate_dev_init(void)
{
	return misc_register(&idgate_misc);
}

void idgate_dev_exit(void)
{
	misc_deregister(&idgate_misc);
}
