// SPDX-License-Identifier: GPL-2.0
/*
 * Flow table: a hash of intercepted flows per network namespace, bounded by
 * max_entries (oldest evicted first), with unclaimed entries expiring after
 * timeout_ms. Writers (hook, lookup, gc) take the table's spinlock; peeks and
 * frees are RCU-safe.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hash.h>
#include <linux/jhash.h>
#include <linux/jiffies.h>
#include <linux/log2.h>
#include <linux/random.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "flowtable.h"
#include "stats.h"

static struct kmem_cache *idgate_flow_cache __read_mostly;

int idgate_flow_cache_init(void)
{
	idgate_flow_cache = KMEM_CACHE(idgate_flow, 0);
	return idgate_flow_cache ? 0 : -ENOMEM;
}

void idgate_flow_cache_exit(void)
{
	kmem_cache_destroy(idgate_flow_cache);
}

struct idgate_flow *idgate_flow_new(const struct idgate_flow_key *key)
{
	struct idgate_flow *flow = kmem_cache_alloc(idgate_flow_cache, GFP_ATOMIC | __GFP_NOWARN);

	if (!flow)
		return NULL;
	INIT_HLIST_NODE(&flow->hnode);
	INIT_LIST_HEAD(&flow->age);
	flow->key = *key;
	flow->created = jiffies;
	idgate_identity_capture(&flow->id);
	return flow;
}

static void flow_free_rcu(struct rcu_head *head)
{
	struct idgate_flow *flow = container_of(head, struct idgate_flow, rcu);

	idgate_identity_release(&flow->id);
	kmem_cache_free(idgate_flow_cache, flow);
}

void idgate_flow_free(struct idgate_flow *flow)
{
	call_rcu(&flow->rcu, flow_free_rcu);
}

#ifdef IDGATE_FAULT_UAF
void idgate_flow_free_sync(struct idgate_flow *flow)
{
	idgate_identity_release(&flow->id);
	kmem_cache_free(idgate_flow_cache, flow);
}
#endif

static struct hlist_head *bucket(struct idgate_table *t, const struct idgate_flow_key *key)
{
	u32 h = jhash2((const u32 *)key, sizeof(*key) / sizeof(u32), t->seed);

	return &t->buckets[hash_32(h, t->hash_bits)];
}

/* Caller holds t->lock. */
static void unlink_locked(struct idgate_table *t, struct idgate_flow *flow)
{
	lockdep_assert_held(&t->lock);
	hlist_del_init_rcu(&flow->hnode);
	list_del_init(&flow->age);
	t->count--;
	idgate_stat_dec(entries);
}

/* Caller holds t->lock. */
static struct idgate_flow *find_locked(struct idgate_table *t, const struct idgate_flow_key *key)
{
	struct idgate_flow *flow;

	lockdep_assert_held(&t->lock);
	hlist_for_each_entry(flow, bucket(t, key), hnode)
		if (!memcmp(&flow->key, key, sizeof(*key)))
			return flow;
	return NULL;
}

/*
 * Unlink expired entries (oldest first) onto @dead; caller holds t->lock.
 * Returns the jiffies at which the next entry expires, or 0 if empty.
 */
static unsigned long expire_locked(struct idgate_table *t, struct list_head *dead)
{
	unsigned long timeout = msecs_to_jiffies(READ_ONCE(idgate_timeout_ms));
	struct idgate_flow *flow, *tmp;

	lockdep_assert_held(&t->lock);
	list_for_each_entry_safe(flow, tmp, &t->fifo, age) {
		if (time_before(jiffies, flow->created + timeout))
			return flow->created + timeout;
		unlink_locked(t, flow);
		list_add_tail(&flow->age, dead);
		idgate_stat_inc(expired);
	}
	return 0;
}

static void free_list(struct list_head *dead)
{
	struct idgate_flow *flow, *tmp;

	list_for_each_entry_safe(flow, tmp, dead, age) {
		list_del(&flow->age);
		idgate_flow_free(flow);
	}
}

/*
 * Delay until the gc should run for an entry expiring at @until: at most a
 * second, so that a shorter timeout_ms set at run time takes effect soon.
 */
static unsigned long gc_delay(unsigned long until)
{
	long d = (long)(until - jiffies);

	return clamp_t(long, d, 1, HZ);
}

static void gc_work(struct work_struct *work)
{
	struct idgate_table *t = container_of(to_delayed_work(work), struct idgate_table, gc);
	unsigned long next;
	LIST_HEAD(dead);

	spin_lock_bh(&t->lock);
	next = expire_locked(t, &dead);
	if (next && !t->dead)
		mod_delayed_work(system_power_efficient_wq, &t->gc, gc_delay(next));
	spin_unlock_bh(&t->lock);
	free_list(&dead);
}

int idgate_table_init(struct idgate_table *t)
{
	unsigned int n = clamp_t(unsigned int, READ_ONCE(idgate_max_entries), 64, 1U << 16);
	unsigned int i;

	spin_lock_init(&t->lock);
	t->hash_bits = ilog2(roundup_pow_of_two(n));
	t->buckets = kvmalloc_array(1U << t->hash_bits, sizeof(*t->buckets), GFP_KERNEL);
	if (!t->buckets)
		return -ENOMEM;
	for (i = 0; i < (1U << t->hash_bits); i++)
		INIT_HLIST_HEAD(&t->buckets[i]);
	t->seed = get_random_u32();
	INIT_LIST_HEAD(&t->fifo);
	t->count = 0;
	t->dead = false;
	INIT_DELAYED_WORK(&t->gc, gc_work);
	return 0;
}

void idgate_table_destroy(struct idgate_table *t)
{
	struct idgate_flow *flow, *tmp;
	LIST_HEAD(dead);

	spin_lock_bh(&t->lock);
	t->dead = true;
	list_for_each_entry_safe(flow, tmp, &t->fifo, age) {
		unlink_locked(t, flow);
		list_add_tail(&flow->age, &dead);
		idgate_stat_inc(flushed);
	}
	spin_unlock_bh(&t->lock);
	cancel_delayed_work_sync(&t->gc);
	free_list(&dead);
	/* Peeks run in a task of this namespace: there are none left. */
	kvfree(t->buckets);
	t->buckets = NULL;
}

void idgate_table_insert(struct idgate_table *t, struct idgate_flow *flow)
{
	unsigned int max = READ_ONCE(idgate_max_entries);
	struct idgate_flow *old;
	unsigned long next;
	LIST_HEAD(dead);

	spin_lock_bh(&t->lock);
	expire_locked(t, &dead);
	old = find_locked(t, &flow->key);
	if (old) {
		/* Same 4-tuple reused before the proxy claimed it: newest wins. */
		unlink_locked(t, old);
		list_add_tail(&old->age, &dead);
		idgate_stat_inc(evictions);
	}
	while (t->count >= max) {
		old = list_first_entry(&t->fifo, struct idgate_flow, age);
		unlink_locked(t, old);
		list_add_tail(&old->age, &dead);
		idgate_stat_inc(evictions);
	}
	hlist_add_head_rcu(&flow->hnode, bucket(t, &flow->key));
	list_add_tail(&flow->age, &t->fifo);
	t->count++;
	idgate_stat_inc(entries);
	idgate_stat_inc(recorded);
	idgate_stat_peak(t->count);
	if (!t->dead && !delayed_work_pending(&t->gc)) {
		next = flow->created + msecs_to_jiffies(READ_ONCE(idgate_timeout_ms)) + 1;
		mod_delayed_work(system_power_efficient_wq, &t->gc, gc_delay(next));
	}
	spin_unlock_bh(&t->lock);
	free_list(&dead);
}

struct idgate_flow *idgate_table_take(struct idgate_table *t, const struct idgate_flow_key *key)
{
	struct idgate_flow *flow;

	spin_lock_bh(&t->lock);
	flow = find_locked(t, key);
	if (flow)
		unlink_locked(t, flow);
	spin_unlock_bh(&t->lock);
	return flow;
}

int idgate_table_peek(struct idgate_table *t, const struct idgate_flow_key *key,
		      struct idgate_lookup *out, struct file **exe_file)
{
	struct idgate_flow *flow;
	int ret = -ENOENT;

	*exe_file = NULL;
	rcu_read_lock();
	hlist_for_each_entry_rcu(flow, bucket(t, key), hnode) {
		if (!memcmp(&flow->key, key, sizeof(*key))) {
			idgate_identity_fill(&flow->id, out);
			/*
			 * The entry holds its reference until a grace period after
			 * it is unlinked: the count is not zero here.
			 */
			if (flow->id.exe_file)
				*exe_file = get_file(flow->id.exe_file);
			ret = 0;
			break;
		}
	}
	rcu_read_unlock();
	return ret;
}
