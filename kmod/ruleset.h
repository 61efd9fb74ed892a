/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The intercept set as the hook searches it: (prefix, port range) pairs
 * grouped by family and prefix length, each group sorted by prefix.
 */
#ifndef _IDGATE_RULESET_H
#define _IDGATE_RULESET_H

#include <linux/types.h>
#include <uapi/idgate.h>

struct idgate_flow_key;

struct idgate_port_range {
	u16 min, max;
};

/*
 * One prefix of one length, and its destination ports: sorted, disjoint
 * and not adjacent ranges[first .. first + count).
 */
struct idgate_prefix {
	u8 addr[16];			/* network order, bits past the length zero */
	u32 first, count;
};

/* The prefixes of one family, longest length first. */
struct idgate_family_set {
	unsigned int nlens;
	struct {
		u8 len;
		u32 first, count;	/* prefixes[first .. first + count), sorted by addr */
	} lens[129];
};

struct idgate_ruleset {
	struct idgate_family_set fam[2];	/* IPv4, IPv6 */
	struct idgate_prefix *prefixes;
	struct idgate_port_range *ranges;
};

/* Index @n valid rules (process context). Returns NULL on allocation failure. */
struct idgate_ruleset *idgate_ruleset_build(const struct idgate_rule *rules, unsigned int n);
void idgate_ruleset_free(struct idgate_ruleset *set);
/* Does a rule of @set match @key's family, destination address and port? */
bool idgate_ruleset_match(const struct idgate_ruleset *set, const struct idgate_flow_key *key);

#endif
