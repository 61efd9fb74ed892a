/* SPDX-License-Identifier: GPL-2.0 */
/* Counters, summed over namespaces; sysfs /sys/kernel/idgate/stats/. */
#ifndef _IDGATE_STATS_H
#define _IDGATE_STATS_H

#include <linux/atomic.h>
#include <uapi/idgate.h>

struct idgate_counters {
	atomic64_t entries, peak_entries, recorded, lookups, hits, misses;
	atomic64_t evictions, expired, flushed, dropped, skipped_proxy;
};

extern struct idgate_counters idgate_counters;

#define idgate_stat_inc(name) atomic64_inc(&idgate_counters.name)
#define idgate_stat_dec(name) atomic64_dec(&idgate_counters.name)

/* Raise peak_entries to @count if higher. */
void idgate_stat_peak(unsigned int count);
void idgate_stats_fill(struct idgate_stats *out);
int idgate_stats_init(void);
void idgate_stats_exit(void);

#endif
