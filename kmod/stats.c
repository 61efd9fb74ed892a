// SPDX-License-Identifier: GPL-2.0
/* Counters and their sysfs view, /sys/kernel/idgate/stats/<name>. */
#include <linux/kobject.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "flowtable.h"
#include "stats.h"

struct idgate_counters idgate_counters;

void idgate_stat_peak(unsigned int count)
{
	s64 old = atomic64_read(&idgate_counters.peak_entries);

	while (old < count) {
		s64 seen = atomic64_cmpxchg(&idgate_counters.peak_entries, old, count);

		if (seen == old)
			break;
		old = seen;
	}
}

#define C(name) ((__u64)atomic64_read(&idgate_counters.name))

void idgate_stats_fill(struct idgate_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->entries = C(entries);
	out->peak_entries = C(peak_entries);
	out->max_entries = READ_ONCE(idgate_max_entries);
	out->recorded = C(recorded);
	out->lookups = C(lookups);
	out->hits = C(hits);
	out->misses = C(misses);
	out->evictions = C(evictions);
	out->expired = C(expired);
	out->flushed = C(flushed);
	out->dropped = C(dropped);
	out->skipped_proxy = C(skipped_proxy);
}

#define STAT_ATTR(name)							\
static ssize_t name##_show(struct kobject *kobj,			\
			   struct kobj_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%llu\n", C(name));			\
}									\
static struct kobj_attribute name##_attr = __ATTR_RO(name)

STAT_ATTR(entries);
STAT_ATTR(peak_entries);
STAT_ATTR(recorded);
STAT_ATTR(lookups);
STAT_ATTR(hits);
STAT_ATTR(misses);
STAT_ATTR(evictions);
STAT_ATTR(expired);
STAT_ATTR(flushed);
STAT_ATTR(dropped);
STAT_ATTR(skipped_proxy);

static struct attribute *idgate_stat_attrs[] = {
	&entries_attr.attr, &peak_entries_attr.attr, &recorded_attr.attr,
	&lookups_attr.attr, &hits_attr.attr, &misses_attr.attr,
	&evictions_attr.attr, &expired_attr.attr, &flushed_attr.attr,
	&dropped_attr.attr, &skipped_proxy_attr.attr, NULL,
};

static const struct attribute_group idgate_stat_group = {
	.name = "stats",
	.attrs = idgate_stat_attrs,
};

static struct kobject *idgate_kobj;

int idgate_stats_init(void)
{
	int ret;

	memset(&idgate_counters, 0, sizeof(idgate_counters));
	idgate_kobj = kobject_create_and_add("idgate", kernel_kobj);
	if (!idgate_kobj)
		return -ENOMEM;
	ret = sysfs_create_group(idgate_kobj, &idgate_stat_group);
	if (ret) {
		kobject_put(idgate_kobj);
		idgate_kobj = NULL;
	}
	return ret;
}

void idgate_stats_exit(void)
{
	sysfs_remove_group(idgate_kobj, &idgate_stat_group);
	kobject_put(idgate_kobj);
	idgate_kobj = NULL;
}
