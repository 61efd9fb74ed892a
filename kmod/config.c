// SPDX-License-Identifier: GPL-2.0
/* Intercept configuration: validation, publication and matching. */
#include <linux/err.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/string.h>

#include "config.h"
#include "flowtable.h"
#include "netns.h"
#include "proxies.h"

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

static int cfg_build(const struct idgate_config *u, struct idgate_cfg **out)
{
	struct idgate_cfg *cfg;
	unsigned int i;

	*out = NULL;
	if (u->flags || u->pad || u->rule_count > IDGATE_MAX_RULES)
		return -EINVAL;
	if (!u->rule_count)
		return 0;
	if (!u->mark || (u->mark & ~u->mark_mask))
		return -EINVAL;
	for (i = 0; i < u->rule_count; i++)
		if (!rule_valid(&u->rules[i]))
			return -EINVAL;

	cfg = kzalloc(sizeof(*cfg), GFP_KERNEL);
	if (!cfg)
		return -ENOMEM;
	cfg->mark = u->mark;
	cfg->mask = u->mark_mask;
	cfg->nrules = u->rule_count;
	memcpy(cfg->rules, u->rules, u->rule_count * sizeof(u->rules[0]));
	*out = cfg;
	return 0;
}

static void cfg_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct idgate_cfg, rcu));
}

/* Caller holds idgate_cfg_mutex. */
static void cfg_replace_locked(struct idgate_net *in, struct idgate_cfg *cfg)
{
	struct idgate_cfg *old = rcu_replace_pointer(in->cfg, cfg, lockdep_is_held(&idgate_cfg_mutex));

	if (old)
		call_rcu(&old->rcu, cfg_free_rcu);
}

/* The proxy that u->proxy_tgid names (a reference, resolved in the caller's
 * pid namespace), NULL for none; ERR_PTR(-ESRCH) if no such process. */
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
		kfree(cfg);
		return PTR_ERR(proxy);
	}
	mutex_lock(&idgate_cfg_mutex);
	/* The exemption is in force before the intercept set it goes with. */
	ret = idgate_proxies_set_locked(c, in, proxy);
	if (!ret)
		cfg_replace_locked(in, cfg);
	mutex_unlock(&idgate_cfg_mutex);
	if (ret)
		kfree(cfg);
	return ret;
}

void idgate_cfg_clear(struct idgate_net *in)
{
	mutex_lock(&idgate_cfg_mutex);
	cfg_replace_locked(in, NULL);
	mutex_unlock(&idgate_cfg_mutex);
}

void idgate_cfg_get(struct idgate_net *in, const struct idgate_client *c, struct idgate_config *u)
{
	const struct idgate_cfg *cfg;

	memset(u, 0, sizeof(*u));
	mutex_lock(&idgate_cfg_mutex);
	cfg = rcu_dereference_protected(in->cfg, lockdep_is_held(&idgate_cfg_mutex));
	if (cfg) {
		u->mark = cfg->mark;
		u->mark_mask = cfg->mask;
		u->rule_count = cfg->nrules;
		memcpy(u->rules, cfg->rules, cfg->nrules * sizeof(cfg->rules[0]));
	}
	if (c->in == in && pid_has_task(c->proxy, PIDTYPE_TGID))
		u->proxy_tgid = pid_vnr(c->proxy);
	mutex_unlock(&idgate_cfg_mutex);
}

static bool prefix_match(const u8 *addr, const u8 *prefix, unsigned int len)
{
	unsigned int bytes = len / 8, bits = len % 8;

	if (memcmp(addr, prefix, bytes))
		return false;
	if (!bits)
		return true;
	return !((addr[bytes] ^ prefix[bytes]) & (0xff00 >> bits));
}

bool idgate_cfg_match(const struct idgate_cfg *cfg, const struct idgate_flow_key *key)
{
	unsigned int i;

	for (i = 0; i < cfg->nrules; i++) {
		const struct idgate_rule *r = &cfg->rules[i];

		if (r->family == key->family &&
		    key->dport >= r->port_min && key->dport <= r->port_max &&
		    prefix_match(key->daddr, r->addr, r->prefix_len))
			return true;
	}
	return false;
}
