// SPDX-License-Identifier: GPL-2.0
/* Planted faults (see fault.h); built only with IDGATE_FAULT=<name>. */
#include <linux/mutex.h>
#include <linux/slab.h>

#include "config.h"
#include "fault.h"
#include "flowtable.h"

#ifdef IDGATE_FAULT_UAF
void idgate_fault_free_now(struct idgate_flow *flow)
{
	idgate_flow_free_sync(flow);
}
#endif

#ifdef IDGATE_FAULT_LOCK
void idgate_fault_hold_cfg_mutex(void)
{
	static bool done;

	if (!done) {
		done = true;
		idgate_cfg_mutex_lock();
	}
}
#endif
