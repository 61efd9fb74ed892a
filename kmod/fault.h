/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Planted faults, for proving that the debug-kernel harness catches what it
 * claims to (tests/vm/faults.sh). Compiled in only when the module is built
 * with IDGATE_FAULT=<name> (see Kbuild); a normal build has none of them and
 * every hook below is an empty inline.
 *
 *   uaf   a consumed entry is freed before its identity is copied out  (KASAN)
 *   lock  a lookup miss returns with the configuration mutex held       (lockdep)
 *   leak  a consumed entry is never freed                               (kmemleak)
 *   eio   every lookup fails with EIO (an ioctl error, for the proxy)   (proxy tests)
 */
#ifndef _IDGATE_FAULT_H
#define _IDGATE_FAULT_H

struct idgate_flow;

#if defined(IDGATE_FAULT_UAF) || defined(IDGATE_FAULT_LOCK) || \
	defined(IDGATE_FAULT_LEAK) || defined(IDGATE_FAULT_EIO)
#define IDGATE_FAULT 1
#endif

#ifdef IDGATE_FAULT_UAF
void idgate_fault_free_now(struct idgate_flow *flow);
#else
static inline void idgate_fault_free_now(struct idgate_flow *flow) {}
#endif

#ifdef IDGATE_FAULT_LOCK
void idgate_fault_hold_cfg_mutex(void);
#else
static inline void idgate_fault_hold_cfg_mutex(void) {}
#endif

/* Does the normal path still free a consumed entry? */
#if defined(IDGATE_FAULT_UAF) || defined(IDGATE_FAULT_LEAK)
#define IDGATE_FAULT_SKIP_FREE 1
#else
#define IDGATE_FAULT_SKIP_FREE 0
#endif

#ifdef IDGATE_FAULT_EIO
#define IDGATE_FAULT_LOOKUP_ERROR (-EIO)
#else
#define IDGATE_FAULT_LOOKUP_ERROR 0
#endif

#endif
