/* SPDX-License-Identifier: GPL-2.0 */
/* Per network namespace intercept configuration (set by the proxy). */
#ifndef _IDGATE_CONFIG_H
#define _IDGATE_CONFIG_H

#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/types.h>
#include <uapi/idgate.h>

struct idgate_client;
struct idgate_flow_key;
struct idgate_net;
struct idgate_ruleset;

/*
 * Serializes configuration writers of all namespaces (configurations and
 * proxy registrations).
 */
extern struct mutex idgate_cfg_mutex;

/* Immutable once published; replaced as a whole and freed after RCU. */
struct idgate_cfg {
	struct rcu_head rcu;
	u32 mark;			/* bits to set, within mask */
	u32 mask;			/* bits of the mark owned by idgate */
	u32 nrules;
	struct idgate_rule *rules;	/* as configured, for IDGATE_IOC_GET_CONFIG */
	struct idgate_ruleset *set;	/* the same, indexed for the hook */
};

/**
 * idgate_cfg_set() - Validate a configuration and put it in force.
 * @in: the caller's network namespace
 * @c: the open /dev/idgate it came through
 * @u: the configuration (rule_count 0: intercept nothing)
 *
 * @u becomes the configuration of @in, and u->proxy_tgid the proxy that @c
 * names there (proxies.h), exempt before the intercept set takes effect.
 *
 * Context: process context; takes idgate_cfg_mutex.
 * Return: 0, -EINVAL for a malformed @u, -EFAULT if its rules cannot be
 * read, -ESRCH if u->proxy_tgid names no process, -ENOSPC if @in has
 * IDGATE_MAX_PROXIES proxies already, -ENOMEM.
 */
int idgate_cfg_set(struct idgate_net *in, struct idgate_client *c, const struct idgate_config *u);
/**
 * idgate_cfg_get() - Read the configuration in force.
 * @in: the caller's network namespace
 * @c: the open /dev/idgate the request came through
 * @u: in: rule_room and rules; out: the configuration of @in (all zero if
 *     none) with the proxy that @c names in @in
 *
 * Up to u->rule_room rules are copied to the user buffer at u->rules.
 *
 * Context: process context; takes idgate_cfg_mutex.
 * Return: 0, -EINVAL if u->flags is set, -EFAULT, -ENOMEM.
 */
int idgate_cfg_get(struct idgate_net *in, const struct idgate_client *c, struct idgate_config *u);
/* Drop the configuration of @in (namespace exit). */
void idgate_cfg_clear(struct idgate_net *in);
/* Is the destination of @key in the intercept set? Caller holds RCU. */
bool idgate_cfg_match(const struct idgate_cfg *cfg, const struct idgate_flow_key *key);
#ifdef IDGATE_FAULT_LOCK
void idgate_cfg_mutex_lock(void);	/* planted fault only */
#endif

#endif
