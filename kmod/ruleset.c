// SPDX-License-Identifier: GPL-2.0
/*
 * The intercept set, indexed for the hook. A SYN's destination is looked up
 * once per distinct prefix length of its family (at most 33 or 129, a handful
 * in practice): the address masked to that length is binary searched among
 * that length's prefixes, then the port among that prefix's ranges. So the
 * cost grows with the logarithm of the number of (prefix, port range) pairs,
 * not with their number. Built once per configuration, read-only after.
 */
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/sort.h>
#include <linux/string.h>

#include "flowtable.h"
#include "ruleset.h"

static unsigned int fam_of(u8 family)
{
	return family == AF_INET6;
}

static unsigned int addr_len(unsigned int fam)
{
	return fam ? 16 : 4;
}

/* Family, then longest prefix first, then address, then first port. */
static int rule_cmp(const void *a, const void *b)
{
	const struct idgate_rule *x = a, *y = b;
	int d;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	if (x->prefix_len != y->prefix_len)
		return x->prefix_len > y->prefix_len ? -1 : 1;
	d = memcmp(x->addr, y->addr, sizeof(x->addr));
	if (d)
		return d;
	if (x->port_min != y->port_min)
		return x->port_min < y->port_min ? -1 : 1;
	return 0;
}

static bool same_prefix(const struct idgate_rule *x, const struct idgate_rule *y)
{
	return x->family == y->family && x->prefix_len == y->prefix_len &&
	       !memcmp(x->addr, y->addr, sizeof(x->addr));
}

struct idgate_ruleset *idgate_ruleset_build(const struct idgate_rule *rules, unsigned int n)
{
	struct idgate_ruleset *set = kzalloc(sizeof(*set), GFP_KERNEL);
	struct idgate_rule *sorted = kvmalloc_array(n, sizeof(*sorted), GFP_KERNEL);
	unsigned int i, np = 0, nr = 0;

	if (!set || !sorted)
		goto fail;
	set->prefixes = kvmalloc_array(n, sizeof(*set->prefixes), GFP_KERNEL);
	set->ranges = kvmalloc_array(n, sizeof(*set->ranges), GFP_KERNEL);
	if (!set->prefixes || !set->ranges)
		goto fail;
	memcpy(sorted, rules, n * sizeof(*sorted));
	sort(sorted, n, sizeof(*sorted), rule_cmp, NULL);

	for (i = 0; i < n; i++) {
		const struct idgate_rule *r = &sorted[i];
		struct idgate_family_set *f = &set->fam[fam_of(r->family)];
		struct idgate_prefix *p;
		struct idgate_port_range *last;

		if (i && same_prefix(r, &sorted[i - 1])) {
			/*
			 * Sorted by port_min: a range that overlaps or touches
			 * the last one extends it.
			 */
			p = &set->prefixes[np - 1];
			last = &set->ranges[p->first + p->count - 1];
			if (r->port_min <= last->max || r->port_min == last->max + 1) {
				last->max = max(last->max, r->port_max);
				continue;
			}
		} else {
			if (!f->nlens || f->lens[f->nlens - 1].len != r->prefix_len) {
				f->lens[f->nlens].len = r->prefix_len;
				f->lens[f->nlens].first = np;
				f->lens[f->nlens].count = 0;
				f->nlens++;
			}
			f->lens[f->nlens - 1].count++;
			p = &set->prefixes[np++];
			memcpy(p->addr, r->addr, sizeof(p->addr));
			p->first = nr;
			p->count = 0;
		}
		set->ranges[nr].min = r->port_min;
		set->ranges[nr].max = r->port_max;
		nr++;
		p->count++;
	}
	kvfree(sorted);
	return set;

fail:
	kvfree(sorted);
	idgate_ruleset_free(set);
	return NULL;
}

void idgate_ruleset_free(struct idgate_ruleset *set)
{
	if (!set)
		return;
	kvfree(set->prefixes);
	kvfree(set->ranges);
	kfree(set);
}

/* @addr with the bits past @len cleared, into @out (@alen bytes). */
static void mask_addr(const u8 *addr, unsigned int len, unsigned int alen, u8 *out)
{
	unsigned int bytes = len / 8, bits = len % 8;

	memcpy(out, addr, bytes);
	memset(out + bytes, 0, alen - bytes);
	if (bits)
		out[bytes] = addr[bytes] & (0xff00 >> bits);
}

static const struct idgate_prefix *find_prefix(const struct idgate_ruleset *set,
					       u32 first, u32 count,
					       const u8 *addr, unsigned int alen)
{
	u32 lo = first, hi = first + count;

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;
		int d = memcmp(set->prefixes[mid].addr, addr, alen);

		if (!d)
			return &set->prefixes[mid];
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool port_in(const struct idgate_ruleset *set, const struct idgate_prefix *p, u16 port)
{
	u32 lo = p->first, hi = p->first + p->count;

	/* The last range starting at or below @port is the only candidate. */
	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (set->ranges[mid].min <= port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > p->first && port <= set->ranges[lo - 1].max;
}

bool idgate_ruleset_match(const struct idgate_ruleset *set, const struct idgate_flow_key *key)
{
	unsigned int fam = fam_of(key->family), alen = addr_len(fam), i;
	const struct idgate_family_set *f = &set->fam[fam];
	const struct idgate_prefix *p;
	u8 masked[16];

	for (i = 0; i < f->nlens; i++) {
		mask_addr(key->daddr, f->lens[i].len, alen, masked);
		p = find_prefix(set, f->lens[i].first, f->lens[i].count, masked, alen);
		if (p && port_in(set, p, key->dport))
			return true;
	}
	return false;
}
