/* SPDX-License-Identifier: GPL-2.0 */
/* Netfilter LOCAL_OUT hook that records and marks intercepted flows. */
#ifndef _IDGATE_HOOK_H
#define _IDGATE_HOOK_H

struct net;

int idgate_hook_register(struct net *net);
/*
 * A hook already running may still run on return: wait for an RCU grace
 * period before freeing what it uses.
 */
void idgate_hook_unregister(struct net *net);

#endif
