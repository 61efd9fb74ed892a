// SPDX-License-Identifier: GPL-2.0
/*
 * Proxy processes exempt from tagging. Each open /dev/idgate may name one
 * process (the proxy_tgid of its last IDGATE_IOC_CONFIG) in the namespace it
 * configured; the exemption lasts until that file is closed or configures
 * again. Two idgate processes that serve flows at once (an upgrade: the
 * successor started, the old one draining) each keep their own file, so
 * neither process's own connections are tagged and redirected to the other.
 */
#include <linux/mutex.h>
#include <linux/slab.h>

#include "config.h"
#include "netns.h"
#include "proxies.h"

static void exempt_free_rcu(struct rcu_head *head)
{
	struct idgate_exempt *e = container_of(head, struct idgate_exempt, rcu);
	unsigned int i;

	for (i = 0; i < e->n; i++)
		put_pid(e->tgid[i]);
	kfree(e);
}

/*
 * Publish the proxies of @in's clients. Caller holds idgate_cfg_mutex. If
 * the new set cannot be allocated, none is published: until the next change
 * the proxies' own connections are tagged (and refused), rather than a
 * process whose file is closed going untagged.
 */
static int publish_locked(struct idgate_net *in)
{
	struct idgate_exempt *e = NULL, *old;
	struct idgate_client *c;
	unsigned int n = 0;
	int ret = 0;

	lockdep_assert_held(&idgate_cfg_mutex);
	list_for_each_entry(c, &in->clients, node)
		n++;
	if (n) {
		e = kzalloc(struct_size(e, tgid, n), GFP_KERNEL);
		if (e) {
			list_for_each_entry(c, &in->clients, node)
				e->tgid[e->n++] = get_pid(c->proxy);
		} else {
			ret = -ENOMEM;
		}
	}
	old = rcu_replace_pointer(in->exempt, e, lockdep_is_held(&idgate_cfg_mutex));
	if (old)
		call_rcu(&old->rcu, exempt_free_rcu);
	return ret;
}

/* Unlink @c from its namespace. Caller holds idgate_cfg_mutex. */
static void unlink_locked(struct idgate_client *c)
{
	struct idgate_net *in = c->in;

	lockdep_assert_held(&idgate_cfg_mutex);
	if (!in)
		return;
	list_del_init(&c->node);
	c->in = NULL;
	put_pid(c->proxy);
	c->proxy = NULL;
	publish_locked(in);
}

int idgate_proxies_set_locked(struct idgate_client *c, struct idgate_net *in, struct pid *proxy)
{
	struct idgate_client *o;
	unsigned int n = 0;
	int ret;

	lockdep_assert_held(&idgate_cfg_mutex);
	if (proxy && c->in == in) {
		/*
		 * Replaced in place: a reload must not leave a moment in which
		 * the proxy's own connections are tagged.
		 */
		put_pid(c->proxy);
		c->proxy = proxy;
		return publish_locked(in);
	}
	if (proxy) {
		list_for_each_entry(o, &in->clients, node)
			n++;
		if (n >= IDGATE_MAX_PROXIES) {
			put_pid(proxy);
			return -ENOSPC;
		}
	}
	unlink_locked(c);
	if (!proxy)
		return 0;
	c->in = in;
	c->proxy = proxy;
	list_add_tail(&c->node, &in->clients);
	ret = publish_locked(in);
	if (ret)
		unlink_locked(c);
	return ret;
}

void idgate_proxies_release(struct idgate_client *c)
{
	mutex_lock(&idgate_cfg_mutex);
	unlink_locked(c);
	mutex_unlock(&idgate_cfg_mutex);
}

void idgate_proxies_flush(struct idgate_net *in)
{
	struct idgate_client *c, *tmp;
	struct idgate_exempt *old;

	mutex_lock(&idgate_cfg_mutex);
	list_for_each_entry_safe(c, tmp, &in->clients, node) {
		list_del_init(&c->node);
		c->in = NULL;
		put_pid(c->proxy);
		c->proxy = NULL;
	}
	old = rcu_replace_pointer(in->exempt, NULL, lockdep_is_held(&idgate_cfg_mutex));
	mutex_unlock(&idgate_cfg_mutex);
	if (old)
		call_rcu(&old->rcu, exempt_free_rcu);
}

bool idgate_is_proxy(struct idgate_net *in)
{
	const struct idgate_exempt *e = rcu_dereference(in->exempt);
	struct pid *me = task_tgid(current);
	unsigned int i;

	for (i = 0; e && i < e->n; i++)
		if (e->tgid[i] == me)
			return true;
	return false;
}
