// SPDX-License-Identifier: GPL-2.0
/* Intercept configuration: validation, publication and matching. */
#include <linux/err.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "config.h"
#include "flowtable.h"
#include "netns.h"
#include "proxies.h"
#include "ruleset.h"

/* Serializes configuration writers (config.h). */
DEFINE_MUTEX(idgate_cfg_mutex);

#ifdef IDGATE_FAULT_LOCK
void idgate_cfg_mutex_lock(void)
{
	mutex_lock(&idgate_cfg_mutex);
}
#endif

static bool rule_valid(const struct idgate_rule *r)
{
	unsigned int bits, i;

	if (r->family == AF_INET)
		bits = 32;
	else if (r->family == AF_INET6)
		bits = 128;
	else
		return false;
	if (r->prefix_len > bits || r->pad || r->port_min > r->port_max)
		return false;
	/* No bit past the prefix may be set (IPv4: bytes 4..15 too). */
	for (i = r->prefix_len; i < 128; i++)
		if (r->addr[i / 8] & (0x80 >> (i % 8)))
			return false;
	return true;
}

static void cfg_free(struct idgate_cfg *cfg)
{
	if (!cfg)
		return;
	idgate_ruleset_free(cfg->set);
	kvfree(cfg->rules);
	kfree(cfg);
}

static int cfg_build(const struct idgate_config *u, struct idgate_cfg **out)
{
	struct idgate_rule *rules;
	struct idgate_cfg *cfg;
	unsigned int i;
	int ret;

	*out = NULL;
	if (u->flags || u->rule_room || u->rule_count > IDGATE_MAX_RULES)
		return -EINVAL;
	if (!u->rule_count)
		return 0;
	if (!u->mark || (u->mark & ~u->mark_mask))
		return -EINVAL;

	cfg = kzalloc(sizeof(*cfg), GFP_KERNEL);
	if (!cfg)
		return -ENOMEM;
	rules = vmemdup_user(u64_to_user_ptr(u->rules),
			     array_size(u->rule_count, sizeof(*rules)));
	if (IS_ERR(rules)) {
		ret = PTR_ERR(rules);
		goto err_free;
	}
	cfg->rules = rules;
	cfg->nrules = u->rule_count;
	for (i = 0; i < cfg->nrules; i++) {
		if (!rule_valid(&cfg->rules[i])) {
			ret = -EINVAL;
			goto err_free;
		}
	}
	cfg->set = idgate_ruleset_build(cfg->rules, cfg->nrules);
	if (!cfg->set) {
		ret = -ENOMEM;
		goto err_free;
	}
	cfg->mark = u->mark;
	cfg->mask = u->mark_mask;
	*out = cfg;
	return 0;

err_free:
	cfg_free(cfg);
	return ret;
}

/* kvfree() from softirq: vfree() defers the work when in interrupt. */
static void cfg_free_rcu(struct rcu_head *head)
{
	cfg_free(container_of(head, struct idgate_cfg, rcu));
}

/* Caller holds idgate_cfg_mutex. */
static void cfg_replace_locked(struct idgate_net *in, struct idgate_cfg *cfg)
{
	struct idgate_cfg *old;

	lockdep_assert_held(&idgate_cfg_mutex);
	old = rcu_replace_pointer(in->cfg, cfg, lockdep_is_held(&idgate_cfg_mutex));
	if (old)
		call_rcu(&old->rcu, cfg_free_rcu);
}

/*
 * The proxy that u->proxy_tgid names (a reference, resolved in the caller's
 * pid namespace), NULL for none; ERR_PTR(-ESRCH) if no such process.
 */
static struct pid *proxy_of(const struct idgate_config *u)
{
	struct pid *pid;

	if (!u->rule_count || !u->proxy_tgid)
		return NULL;
	pid = find_get_pid(u->proxy_tgid);
	if (!pid || !pid_has_task(pid, PIDTYPE_TGID)) {
		put_pid(pid);
		return ERR_PTR(-ESRCH);
	}
	return pid;
}

int idgate_cfg_set(struct idgate_net *in, struct idgate_client *c, const struct idgate_config *u)
{
	struct idgate_cfg *cfg;
	struct pid *proxy;
	int ret = cfg_build(u, &cfg);

	if (ret)
		return ret;
	proxy = proxy_of(u);
	if (IS_ERR(proxy)) {
		cfg_free(cfg);
		return PTR_ERR(proxy);
	}
	mutex_lock(&idgate_cfg_mutex);
	/* The exemption is in force before the intercept set it goes with. */
	ret = idgate_proxies_set_locked(c, in, proxy);
	if (!ret)
		cfg_replace_locked(in, cfg);
	mutex_unlock(&idgate_cfg_mutex);
	if (ret)
		cfg_free(cfg);
	return ret;
}

void idgate_cfg_clear(struct idgate_net *in)
{
	mutex_lock(&idgate_cfg_mutex);
	cfg_replace_locked(in, NULL);
	mutex_unlock(&idgate_cfg_mutex);
}

int idgate_cfg_get(struct idgate_net *in, const struct idgate_client *c, struct idgate_config *u)
{
	struct idgate_rule __user *to = u64_to_user_ptr(u->rules);
	u32 room = u->rule_room, n = 0;
	const struct idgate_cfg *cfg;
	struct idgate_rule *copy = NULL;
	int ret = 0;

	if (u->flags)
		return -EINVAL;
	memset(u, 0, sizeof(*u));
	mutex_lock(&idgate_cfg_mutex);
	cfg = rcu_dereference_protected(in->cfg, lockdep_is_held(&idgate_cfg_mutex));
	if (cfg) {
		u->mark = cfg->mark;
		u->mark_mask = cfg->mask;
		u->rule_count = cfg->nrules;
		n = min(room, cfg->nrules);
		/*
		 * Copied out once the mutex is released: a faulting user
		 * buffer must not hold up other namespaces' writers.
		 */
		if (n) {
			copy = kvmalloc_array(n, sizeof(*copy), GFP_KERNEL);
			if (copy)
				memcpy(copy, cfg->rules, array_size(n, sizeof(*copy)));
			else
				ret = -ENOMEM;
		}
	}
	if (c->in == in && pid_has_task(c->proxy, PIDTYPE_TGID))
		u->proxy_tgid = pid_vnr(c->proxy);
	mutex_unlock(&idgate_cfg_mutex);
	if (!ret && n && copy_to_user(to, copy, array_size(n, sizeof(*copy))))
		ret = -EFAULT;
	kvfree(copy);
	return ret;
}

bool idgate_cfg_match(const struct idgate_cfg *cfg, const struct idgate_flow_key *key)
{
	RCU_LOCKDEP_WARN(!rcu_read_lock_held(), "caller must hold rcu_read_lock()");
	return idgate_ruleset_match(cfg->set, key);
}
