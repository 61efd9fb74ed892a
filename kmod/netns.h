/* SPDX-License-Identifier: GPL-2.0 */
/* Per network namespace state of idgate. */
#ifndef _IDGATE_NETNS_H
#define _IDGATE_NETNS_H

#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "flowtable.h"

struct idgate_cfg;
struct idgate_exempt;

struct idgate_net {
	/*
	 * Intercept configuration; NULL = intercept nothing. Readers: RCU (the
	 * hook). Writers: idgate_cfg_mutex (config.c).
	 */
	struct idgate_cfg __rcu *cfg;
	/*
	 * Open files that name a proxy here, and those proxies as the hook
	 * reads them (proxies.c); under idgate_cfg_mutex, readers RCU.
	 */
	struct list_head clients;
	struct idgate_exempt __rcu *exempt;
	/* Identities of intercepted flows, waiting for the proxy's lookup. */
	struct idgate_table table;
};

extern unsigned int idgate_net_id;

static inline struct idgate_net *idgate_pernet(const struct net *net)
{
	return net_generic(net, idgate_net_id);
}

#endif
