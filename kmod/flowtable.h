/* SPDX-License-Identifier: GPL-2.0 */
/* Bounded table of intercepted flows and their identities, per namespace. */
#ifndef _IDGATE_FLOWTABLE_H
#define _IDGATE_FLOWTABLE_H

#include <linux/list.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/workqueue.h>
#include <uapi/idgate.h>

#include "identity.h"

extern unsigned int idgate_max_entries;	/* module parameter */
extern unsigned int idgate_timeout_ms;	/* module parameter */

/*
 * A flow as the connecting task saw it (before NAT). Fully zeroed before
 * being filled, so that it can be hashed and compared as bytes.
 */
struct idgate_flow_key {
	u8 saddr[16];		/* IPv4: bytes 0..3, rest zero */
	u8 daddr[16];
	u16 sport;		/* host byte order */
	u16 dport;		/* host byte order */
	u8 family;		/* AF_INET or AF_INET6 */
	u8 pad[3];
};

struct idgate_flow {
	struct hlist_node hnode;	/* in idgate_table.buckets */
	struct list_head age;		/* in idgate_table.fifo */
	struct rcu_head rcu;
	unsigned long created;		/* jiffies */
	struct idgate_flow_key key;
	struct idgate_identity id;
};

struct idgate_table {
	/* Protects buckets (writers; readers use RCU), fifo, count and dead. */
	spinlock_t lock;
	struct hlist_head *buckets;
	unsigned int hash_bits;
	u32 seed;
	struct list_head fifo;		/* all entries, oldest first */
	unsigned int count;
	bool dead;			/* being destroyed: gc must not rearm */
	struct delayed_work gc;		/* expires unclaimed entries */
};

int idgate_flow_cache_init(void);
void idgate_flow_cache_exit(void);	/* after rcu_barrier() */

/* Allocate an entry for @key with the identity of current (atomic context). */
struct idgate_flow *idgate_flow_new(const struct idgate_flow_key *key);
/* Free an entry that is not (or no longer) in a table; RCU-deferred. */
void idgate_flow_free(struct idgate_flow *flow);
#ifdef IDGATE_FAULT_UAF
void idgate_flow_free_sync(struct idgate_flow *flow);	/* planted fault only */
#endif

int idgate_table_init(struct idgate_table *t);
/* Flush every entry and stop the gc; no insert may run concurrently. */
void idgate_table_destroy(struct idgate_table *t);
/*
 * Insert @flow, evicting the oldest entries beyond max_entries and replacing
 * an entry with the same key. The table owns @flow afterwards.
 */
void idgate_table_insert(struct idgate_table *t, struct idgate_flow *flow);
/* Unlink and return the entry for @key, or NULL; caller frees it. */
struct idgate_flow *idgate_table_take(struct idgate_table *t, const struct idgate_flow_key *key);
/**
 * idgate_table_peek() - Read the identity of an entry without removing it.
 * @t: the table
 * @key: the flow
 * @out: its "out" fields are filled, all but exe_dev and exe_ino
 * @exe_file: set to a reference to the executable's file, or NULL; the
 *            caller fills exe_dev and exe_ino from it and puts it
 *
 * Return: 0, or -ENOENT if @t has no entry for @key.
 */
int idgate_table_peek(struct idgate_table *t, const struct idgate_flow_key *key,
		      struct idgate_lookup *out, struct file **exe_file);

#endif
