/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The proxy processes of a network namespace, whose own connections are
 * never tagged: one per open /dev/idgate that named one.
 */
#ifndef _IDGATE_PROXIES_H
#define _IDGATE_PROXIES_H

#include <linux/list.h>
#include <linux/pid.h>
#include <linux/rcupdate.h>
#include <linux/types.h>

struct idgate_net;

/*
 * One open /dev/idgate (file->private_data). Its fields are under
 * idgate_cfg_mutex.
 */
struct idgate_client {
	struct list_head node;		/* in idgate_net.clients while in != NULL */
	struct idgate_net *in;		/* namespace its proxy is registered in, or NULL */
	struct pid *proxy;		/* reference: the process it names, or NULL */
};

/*
 * What the hook reads under RCU: the registered proxies of a namespace.
 * Immutable once published; holds its own references.
 */
struct idgate_exempt {
	struct rcu_head rcu;
	unsigned int n;
	struct pid *tgid[];
};

/**
 * idgate_proxies_set_locked() - Set the proxy that an open file names.
 * @c: the open /dev/idgate
 * @in: the network namespace the proxy is exempt in
 * @proxy: a reference the caller passes on, or NULL for none
 *
 * Replaces what @c named before, in any namespace.
 *
 * Context: caller holds idgate_cfg_mutex.
 * Return: 0, -ENOSPC if @in has IDGATE_MAX_PROXIES others, -ENOMEM; @proxy
 * is released on error.
 */
int idgate_proxies_set_locked(struct idgate_client *c, struct idgate_net *in, struct pid *proxy);
/* The file of @c is closed: drop what it named. */
void idgate_proxies_release(struct idgate_client *c);
/* Namespace exit: forget every registration of @in. */
void idgate_proxies_flush(struct idgate_net *in);
/* Is current one of @in's proxies? Caller holds RCU. */
bool idgate_is_proxy(struct idgate_net *in);

#endif
