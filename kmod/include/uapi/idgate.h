/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * idgate.h - userspace contract of the idgate kernel module (/dev/idgate).
 *
 * The module sees the first SYN of every outbound TCP connection in the
 * context of the task that called connect(). When the destination is in the
 * intercept set configured for the caller's network namespace, it records the
 * identity of that task (keyed by the flow's 4-tuple and network namespace)
 * and sets the configured mark on the packet and the socket, so that an
 * nftables rule (`meta mark & MASK == MARK ... redirect`) sends the flow to
 * the proxy. The proxy then looks the flow up and gets the identity; the
 * lookup consumes the entry.
 *
 * Rules of this contract:
 *  - Only fixed-size __u8/__u16/__u32/__u64 fields, explicit padding, no
 *    pointers (a user address travels as a __u64), bitfields or enums. Every
 *    struct size is a multiple of 8 and identical on all architectures.
 *  - Ports are in HOST byte order. Addresses are raw network-order bytes:
 *    IPv6 uses all 16 bytes, IPv4 uses bytes 0..3 and bytes 4..15 are zero.
 *  - Padding, reserved and flags fields that are "in" must be zero; the
 *    module rejects non-zero values with EINVAL, so they can gain meaning in
 *    a later version without breaking old callers.
 *  - The ioctl numbers encode the struct sizes: a changed layout gets new
 *    numbers and a new IDGATE_API_VERSION.
 *  - All ioctls except IDGATE_IOC_VERSION need CAP_NET_ADMIN in the user
 *    namespace that owns the caller's network namespace (EPERM otherwise).
 */
#ifndef _UAPI_LINUX_IDGATE_H
#define _UAPI_LINUX_IDGATE_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* Version of this contract; IDGATE_IOC_VERSION returns it. */
#define IDGATE_API_VERSION 2

/* The misc device is /dev/IDGATE_DEVICE_NAME. */
#define IDGATE_DEVICE_NAME "idgate"

/* Fixed lengths of the string fields (each NUL-terminated, NUL-padded). */
#define IDGATE_VERSION_LEN 32	/* module version string */
#define IDGATE_COMM_LEN 16	/* same as the kernel's TASK_COMM_LEN */
#define IDGATE_PATH_LEN 256	/* exe and cgroup paths; longer ones are truncated */
#define IDGATE_MAX_RULES 65536	/* size of the intercept set */
/* Open files per network namespace that name a proxy at once. */
#define IDGATE_MAX_PROXIES 8

/* Reply of IDGATE_IOC_VERSION (40 bytes). */
struct idgate_version {
	__u32 api_version;			/* out: IDGATE_API_VERSION of the module */
	__u32 reserved;				/* out: zero */
	/* out: module version, e.g. "0.1.0", NUL-terminated */
	__u8 module_version[IDGATE_VERSION_LEN];
};

/*
 * One entry of the intercept set (24 bytes). A flow matches when its family
 * is equal, its destination address is inside addr/prefix_len and its
 * destination port is within [port_min, port_max].
 */
struct idgate_rule {
	__u8 family;		/* AF_INET (2) or AF_INET6 (10) */
	/* 0..32 for AF_INET, 0..128 for AF_INET6; 0 matches every address */
	__u8 prefix_len;
	__u16 port_min;		/* first destination port, inclusive, host byte order */
	/* last destination port, inclusive, host byte order; >= port_min */
	__u16 port_max;
	__u16 pad;		/* must be zero */
	/* network prefix, network byte order; bits past prefix_len must be zero */
	__u8 addr[16];
};

/*
 * Argument of IDGATE_IOC_CONFIG / IDGATE_IOC_GET_CONFIG (32 bytes); the
 * intercept set itself is an array of struct idgate_rule in the caller's
 * memory, at @rules. A destination matches the set if any of its rules
 * matches; the module indexes it, so a SYN's cost grows with the logarithm
 * of rule_count (and the number of distinct prefix lengths), not with it.
 * Configuration belongs to the network namespace of the caller and replaces
 * the previous one atomically. It stays in force after the configuring file
 * descriptor is closed (so that flows fail closed when the proxy is gone)
 * until it is replaced, the namespace is destroyed or the module unloaded;
 * only the proxy_tgid exemption ends with the file. rule_count == 0 stops
 * interception in that namespace (and names no proxy). Entries recorded
 * before a change stay in the table.
 */
struct idgate_config {
	/* value put in skb->mark and sk->sk_mark bits selected by mark_mask; non-zero */
	__u32 mark;
	/* bits of the mark owned by idgate; (mark & ~mark_mask) must be zero */
	__u32 mark_mask;
	/*
	 * A proxy's tgid in the caller's pid namespace, 0 = none: its
	 * connections are never tagged while this file stays open and does not
	 * configure another (so the old and the new proxy of an upgrade, each
	 * with its own file, are both exempt). ESRCH if no such process, ENOSPC
	 * if IDGATE_MAX_PROXIES other files name one in this namespace.
	 */
	__u32 proxy_tgid;
	/*
	 * CONFIG: entries at @rules, 0..IDGATE_MAX_RULES;
	 * GET_CONFIG (out): entries in force
	 */
	__u32 rule_count;
	__u32 flags;		/* must be zero */
	/*
	 * GET_CONFIG (in): entries that fit at @rules; the first
	 * min(rule_room, rule_count) are written. CONFIG: must be zero
	 */
	__u32 rule_room;
	/* address of the struct idgate_rule array (EFAULT if unreadable) */
	__u64 rules;
};

/* idgate_lookup.flags (in) */
#define IDGATE_LOOKUP_PEEK	0x01	/* return the entry without consuming it */

/* idgate_lookup.result_flags (out) */
/* The process (tgid) has exited by the time of the lookup. */
#define IDGATE_RESULT_EXITED	0x01
/*
 * exe did not fit and is truncated (or unavailable: empty); callers must not
 * match it against exe selectors.
 */
#define IDGATE_RESULT_EXE_TRUNC	0x02
/*
 * cgroup did not fit and is truncated (or unavailable: empty); callers must
 * not match it against cgroup selectors.
 */
#define IDGATE_RESULT_CG_TRUNC	0x04
/* exe_dev and exe_ino are valid (else zero: executable unknown). */
#define IDGATE_RESULT_EXE_ID	0x08

/*
 * Argument of IDGATE_IOC_LOOKUP (632 bytes). The flow is looked up in the
 * caller's network namespace by its 4-tuple as the connecting task saw it
 * (before any NAT): src = the connecting socket's local address, dst = the
 * address it connected to (for a redirected flow: the proxy's peer address
 * and SO_ORIGINAL_DST). Returns 0 and fills the "out" fields when found,
 * -1/ENOENT when no entry exists (never recorded, already consumed,
 * expired or evicted).
 */
struct idgate_lookup {
	__u8 family;		/* in: AF_INET (2) or AF_INET6 (10) */
	__u8 flags;		/* in: IDGATE_LOOKUP_* flags, other bits zero */
	__u16 src_port;		/* in: source (local) port, host byte order */
	__u16 dst_port;		/* in: destination port, host byte order */
	__u16 pad0;		/* in: must be zero */
	/* in: source address, network byte order (IPv4: bytes 0..3) */
	__u8 src_addr[16];
	/* in: destination address, network byte order (IPv4: bytes 0..3) */
	__u8 dst_addr[16];
	/* out: process id (tgid) in the caller's pid namespace; 0 if not visible there */
	__u32 tgid;
	/* out: thread id that called connect(), caller's pid namespace; 0 if not visible */
	__u32 pid;
	/* out: effective uid at connect(), caller's user namespace (overflow uid if unmapped) */
	__u32 uid;
	/* out: effective gid at connect(), caller's user namespace (overflow gid if unmapped) */
	__u32 gid;
	__u32 result_flags;	/* out: IDGATE_RESULT_* flags */
	__u32 pad1;		/* out: zero */
	/*
	 * out: start time of the process (thread group leader), CLOCK_BOOTTIME
	 * ns, same origin as /proc/<pid>/stat field 22 (which is in clock ticks)
	 */
	__u64 start_time_ns;
	/* out: id of the process' cgroup v2 (the inode number of its cgroupfs directory) */
	__u64 cgroup_id;
	__u64 record_time_ns;	/* out: when the SYN was recorded, CLOCK_BOOTTIME ns */
	/*
	 * out: device of the process' executable file as stat(2) reports it in
	 * userspace (st_dev, new_encode_dev()), whatever path it was run by
	 */
	__u64 exe_dev;
	/* out: its inode number (st_ino); both valid with IDGATE_RESULT_EXE_ID */
	__u64 exe_ino;
	/*
	 * out: comm of the process (its thread group leader, as in
	 * /proc/<tgid>/comm), NUL-terminated
	 */
	__u8 comm[IDGATE_COMM_LEN];
	/*
	 * out: path of the process' executable as seen from its own root
	 * (chroot/mount namespace), NUL-terminated ("" if none); a mount
	 * namespace of the process's own can make it name another file:
	 * exe_dev/exe_ino say which file it is
	 */
	__u8 exe[IDGATE_PATH_LEN];
	/* out: cgroup v2 path from the hierarchy root, e.g. "/system.slice/x.service" */
	__u8 cgroup[IDGATE_PATH_LEN];
};

/*
 * Reply of IDGATE_IOC_STATS (128 bytes): counters since module load, summed
 * over all network namespaces (also in /sys/kernel/idgate/stats/). Invariant
 * when no record is in flight: recorded == hits + expired + evictions +
 * flushed + entries, and lookups == hits + misses (peeks count in neither).
 */
struct idgate_stats {
	__u64 entries;		/* entries in the tables now */
	__u64 peak_entries;	/* highest number of entries one namespace's table ever held */
	__u64 max_entries;	/* current bound per namespace (module parameter max_entries) */
	__u64 recorded;		/* entries created (intercepted first SYNs) */
	__u64 lookups;		/* consuming lookups */
	__u64 hits;		/* consuming lookups that found (and removed) an entry */
	__u64 misses;		/* consuming lookups that found nothing */
	__u64 evictions;	/* entries removed, oldest first, to make room in a full table */
	__u64 expired;		/* entries removed unclaimed after timeout_ms */
	__u64 flushed;		/* entries removed by namespace exit or module unload */
	/*
	 * intercepted SYNs not recorded (allocation failure); still marked, so
	 * the proxy sees an unknown flow (fail closed)
	 */
	__u64 dropped;
	__u64 skipped_proxy;	/* SYNs from the proxy's tgid, left untagged */
	__u64 reserved[4];	/* zero */
};

#define IDGATE_IOC_MAGIC 0xB5

/* Read the API and module versions. Needs no capability. */
#define IDGATE_IOC_VERSION	_IOR(IDGATE_IOC_MAGIC, 0x00, struct idgate_version)
/*
 * Replace the configuration of the caller's network namespace.
 * EINVAL on a malformed config, ESRCH if proxy_tgid does not exist.
 */
#define IDGATE_IOC_CONFIG	_IOW(IDGATE_IOC_MAGIC, 0x01, struct idgate_config)
/*
 * Read the configuration of the caller's network namespace (all zero if none;
 * proxy_tgid is the one this file named there, 0 if none, gone or not visible).
 * In: rule_room and rules; flags must be zero.
 */
#define IDGATE_IOC_GET_CONFIG	_IOWR(IDGATE_IOC_MAGIC, 0x02, struct idgate_config)
/* Look a flow up (and consume it unless IDGATE_LOOKUP_PEEK). ENOENT if absent. */
#define IDGATE_IOC_LOOKUP	_IOWR(IDGATE_IOC_MAGIC, 0x03, struct idgate_lookup)
/* Read the counters. */
#define IDGATE_IOC_STATS	_IOR(IDGATE_IOC_MAGIC, 0x04, struct idgate_stats)

#endif /* _UAPI_LINUX_IDGATE_H */
