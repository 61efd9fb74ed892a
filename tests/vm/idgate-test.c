// SPDX-License-Identifier: GPL-2.0
/*
 * idgate-test: tests of the idgate kernel module, run inside the VM (see
 * guest/init). Built statically against kmod/include/uapi/idgate.h.
 *
 *   idgate-test <test> [args]    run one test, print "PASS: ..." or
 *                                "FAIL: ..." lines, exit 0 only if all pass
 *   idg-client-* <mode> ...      (argv[0]) client half of the tests: a copy
 *                                of this binary under another name, so that
 *                                flows come from a different executable
 *
 * Network layout (made by guest/init): netns "cli" (10.77.0.1, fd77::1)
 * and netns "srv" (10.77.0.2, fd77::2) joined by a veth pair; "srv" runs
 * `idgate-test serve` on ports 8080 (intercepted) and 9090 (not).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter_ipv4.h>

#include "idgate.h"

#define DEV "/dev/" IDGATE_DEVICE_NAME
#define MARK 0x100
#define MARK_MASK 0xf00
#define PORT_IN 8080		/* in the intercept set */
#define PORT_OUT 9090		/* outside the intercept set */
#define SRV4 "10.77.0.2"
#define SRV6 "fd77::2"

static int failures;
static int passes;

static void pass(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("PASS: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	passes++;
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("FAIL: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	failures++;
}

#define CHECK(cond, ...) do { if (cond) pass(__VA_ARGS__); else fail(__VA_ARGS__); } while (0)

static void die(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static int dev_open(void)
{
	int fd = open(DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		die("open " DEV);
	return fd;
}

/* A flow as seen by the connecting socket. */
struct tuple {
	int family;
	struct sockaddr_storage src, dst;
	int err;		/* errno of connect(), 0 if it succeeded or is in progress */
	unsigned int mark;	/* SO_MARK of the socket after connect() */
};

static void addr_bytes(const struct sockaddr_storage *ss, uint8_t out[16], uint16_t *port)
{
	memset(out, 0, 16);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;

		memcpy(out, &sin->sin_addr, 4);
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const void *)ss;

		memcpy(out, &sin6->sin6_addr, 16);
		*port = ntohs(sin6->sin6_port);
	}
}

static int do_lookup(int fd, const struct tuple *t, int peek, struct idgate_lookup *l)
{
	memset(l, 0, sizeof(*l));
	l->family = t->family;
	l->flags = peek ? IDGATE_LOOKUP_PEEK : 0;
	addr_bytes(&t->src, l->src_addr, &l->src_port);
	addr_bytes(&t->dst, l->dst_addr, &l->dst_port);
	return ioctl(fd, IDGATE_IOC_LOOKUP, l) ? -errno : 0;
}

static void make_addr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *sin6 = (void *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		inet_pton(AF_INET6, ip, &sin6->sin6_addr);
		*len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (void *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		inet_pton(AF_INET, ip, &sin->sin_addr);
		*len = sizeof(*sin);
	}
}

/* connect() to ip:port; fills @t; returns the socket (or -1 if connect failed). */
static int connect_to(const char *ip, int port, int nonblock, struct tuple *t)
{
	struct sockaddr_storage ss;
	socklen_t len, slen;
	int s;

	make_addr(ip, port, &ss, &len);
	memset(t, 0, sizeof(*t));
	t->family = ss.ss_family;
	s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (s < 0)
		die("socket");
	if (connect(s, (void *)&ss, len) && errno != EINPROGRESS) {
		t->err = errno;
		close(s);
		return -1;
	}
	slen = sizeof(t->src);
	getsockname(s, (void *)&t->src, &slen);
	t->dst = ss;
	slen = sizeof(t->mark);
	getsockopt(s, SOL_SOCKET, SO_MARK, &t->mark, &slen);
	return s;
}

static void set_config(int fd, uint32_t proxy_tgid, int nrules)
{
	struct idgate_config c;

	memset(&c, 0, sizeof(c));
	c.mark = MARK;
	c.mark_mask = MARK_MASK;
	c.proxy_tgid = proxy_tgid;
	c.rule_count = nrules;
	c.rules[0].family = AF_INET;
	c.rules[0].prefix_len = 24;
	inet_pton(AF_INET, "10.77.0.0", c.rules[0].addr);
	c.rules[0].port_min = 8000;
	c.rules[0].port_max = 8099;
	c.rules[1].family = AF_INET6;
	c.rules[1].prefix_len = 64;
	inet_pton(AF_INET6, "fd77::", c.rules[1].addr);
	c.rules[1].port_min = 8000;
	c.rules[1].port_max = 8099;
	if (ioctl(fd, IDGATE_IOC_CONFIG, &c))
		die("IDGATE_IOC_CONFIG");
}

static struct idgate_stats get_stats(int fd)
{
	struct idgate_stats s;

	if (ioctl(fd, IDGATE_IOC_STATS, &s))
		die("IDGATE_IOC_STATS");
	return s;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- client */

/* Client half, run as "idg-client-X MODE IP PORT RESULT_FD GO_FD":
 * waits for a byte on GO_FD, connects, writes its struct tuple to RESULT_FD,
 * then (mode "stay") waits for GO_FD to close, or (mode "exit") exits. */
static int client_main(int argc, char **argv)
{
	struct tuple t;
	char c;
	int s;

	if (argc != 6)
		return 2;
	int rfd = atoi(argv[4]), go = atoi(argv[5]);

	if (read(go, &c, 1) != 1)
		return 3;
	s = connect_to(argv[2], atoi(argv[3]), !strcmp(argv[1], "exit"), &t);
	if (write(rfd, &t, sizeof(t)) != sizeof(t))
		return 4;
	if (!strcmp(argv[1], "exit"))
		_exit(0);
	while (read(go, &c, 1) > 0)
		;
	if (s >= 0)
		close(s);
	return 0;
}

struct child {
	pid_t pid;
	int rfd;		/* read end of its result pipe */
	struct tuple t;
};

/* Fork a client running @exe as @uid/@gid in cgroup @cg (NULL: stay). */
static void spawn_client(struct child *ch, const char *exe, const char *mode, const char *ip,
			 int port, uid_t uid, gid_t gid, const char *cg, const int go[2])
{
	int p[2];

	if (pipe(p))
		die("pipe");
	ch->pid = fork();
	if (ch->pid < 0)
		die("fork");
	if (!ch->pid) {
		char a_port[16], a_rfd[16], a_go[16];

		close(p[0]);
		close(go[1]);	/* the client waits for EOF on go[0] */
		if (cg) {
			char path[256];
			FILE *f;

			snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/cgroup.procs", cg);
			f = fopen(path, "w");
			if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f))
				die("join cgroup");
		}
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			die("setuid");
		snprintf(a_port, sizeof(a_port), "%d", port);
		snprintf(a_rfd, sizeof(a_rfd), "%d", p[1]);
		snprintf(a_go, sizeof(a_go), "%d", go[0]);
		execl(exe, strrchr(exe, '/') + 1, mode, ip, a_port, a_rfd, a_go, (char *)NULL);
		die("exec");
	}
	close(p[1]);
	ch->rfd = p[0];
}

static int read_tuple(struct child *ch)
{
	return read(ch->rfd, &ch->t, sizeof(ch->t)) == sizeof(ch->t) ? 0 : -1;
}

/* Start time of @pid in ns since boot, from /proc/<pid>/stat (clock ticks). */
static long long proc_start_ns(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ticks;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	p = strrchr(buf, ')');
	for (i = 0; p && i < 20; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &ticks) != 1)
		return -1;
	return ticks * (1000000000LL / sysconf(_SC_CLK_TCK));
}

static unsigned long long ino_of(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : st.st_ino;
}

/* Check the identity of a flow against what its client should be. */
static void check_identity(const char *name, const struct idgate_lookup *l, pid_t pid, uid_t uid,
			   gid_t gid, const char *exe, const char *cg)
{
	const char *comm = strrchr(exe, '/') + 1;
	char cgpath[300];

	CHECK(l->tgid == (uint32_t)pid, "%s: tgid %u == client pid %d", name, l->tgid, pid);
	CHECK(l->pid == (uint32_t)pid, "%s: pid %u == client pid %d", name, l->pid, pid);
	CHECK(l->uid == uid && l->gid == gid, "%s: uid/gid %u/%u == %u/%u", name, l->uid, l->gid, uid, gid);
	CHECK(!strcmp((const char *)l->exe, exe), "%s: exe '%s' == '%s'", name, l->exe, exe);
	CHECK(!strncmp((const char *)l->comm, comm, 15), "%s: comm '%s' == '%.15s'", name, l->comm, comm);
	if (cg) {
		snprintf(cgpath, sizeof(cgpath), "/sys/fs/cgroup/%s", cg);
		CHECK(!strcmp((const char *)l->cgroup, cgpath + strlen("/sys/fs/cgroup")),
		      "%s: cgroup '%s' == '%s'", name, l->cgroup, cgpath + 14);
		CHECK(l->cgroup_id == ino_of(cgpath), "%s: cgroup_id %llu == inode of %s (%llu)", name,
		      (unsigned long long)l->cgroup_id, cgpath, ino_of(cgpath));
	}
	CHECK(l->record_time_ns >= l->start_time_ns && l->start_time_ns > 0,
	      "%s: start_time_ns %llu <= record_time_ns %llu", name,
	      (unsigned long long)l->start_time_ns, (unsigned long long)l->record_time_ns);
}

/* ----------------------------------------------------------------- tests */

static int test_version(void)
{
	struct idgate_version v;
	int fd = dev_open();

	memset(&v, 0xff, sizeof(v));
	CHECK(ioctl(fd, IDGATE_IOC_VERSION, &v) == 0, "version: ioctl succeeds");
	CHECK(v.api_version == IDGATE_API_VERSION, "version: api %u == IDGATE_API_VERSION %d",
	      v.api_version, IDGATE_API_VERSION);
	CHECK(memchr(v.module_version, 0, sizeof(v.module_version)) && v.module_version[0],
	      "version: module version '%s'", v.module_version);
	CHECK(ioctl(fd, _IO(IDGATE_IOC_MAGIC, 0x7f)) == -1 && errno == ENOTTY, "version: unknown ioctl -> ENOTTY");
	close(fd);
	return 0;
}

static int test_config(void)
{
	struct idgate_config c, g;
	struct idgate_lookup l;
	int fd = dev_open();

#define BAD(desc, mutate) do {						\
		memset(&c, 0, sizeof(c));				\
		c.mark = MARK; c.mark_mask = MARK_MASK; c.rule_count = 1; \
		c.rules[0].family = AF_INET; c.rules[0].prefix_len = 8;	\
		c.rules[0].addr[0] = 10; c.rules[0].port_max = 65535;	\
		mutate;							\
		CHECK(ioctl(fd, IDGATE_IOC_CONFIG, &c) == -1 && errno == EINVAL, \
		      "config: %s -> EINVAL", desc);			\
	} while (0)
	BAD("mark outside mask", c.mark = 0x1000);
	BAD("zero mark", c.mark = 0);
	BAD("bad family", c.rules[0].family = 3);
	BAD("prefix too long", c.rules[0].prefix_len = 33);
	BAD("host bits set", c.rules[0].addr[3] = 1);
	BAD("port_min > port_max", (c.rules[0].port_min = 10, c.rules[0].port_max = 9));
	BAD("rule_count > max", c.rule_count = IDGATE_MAX_RULES + 1);
	BAD("flags set", c.flags = 1);
	BAD("rule pad set", c.rules[0].pad = 1);
	memset(&c, 0, sizeof(c));
	c.mark = MARK;
	c.mark_mask = MARK_MASK;
	c.rule_count = 1;
	c.proxy_tgid = 999999;
	c.rules[0].family = AF_INET;
	CHECK(ioctl(fd, IDGATE_IOC_CONFIG, &c) == -1 && errno == ESRCH, "config: unknown proxy_tgid -> ESRCH");

	set_config(fd, getpid(), 2);
	memset(&g, 0xff, sizeof(g));
	CHECK(ioctl(fd, IDGATE_IOC_GET_CONFIG, &g) == 0 && g.mark == MARK && g.mark_mask == MARK_MASK &&
	      g.rule_count == 2 && g.proxy_tgid == (uint32_t)getpid() && g.rules[1].family == AF_INET6 &&
	      g.rules[2].family == 0, "config: GET_CONFIG returns what was set");

	memset(&l, 0, sizeof(l));
	l.family = AF_INET;
	l.src_addr[5] = 1;
	CHECK(ioctl(fd, IDGATE_IOC_LOOKUP, &l) == -1 && errno == EINVAL, "lookup: IPv4 with bytes 4..15 set -> EINVAL");
	l.src_addr[5] = 0;
	l.flags = 0x80;
	CHECK(ioctl(fd, IDGATE_IOC_LOOKUP, &l) == -1 && errno == EINVAL, "lookup: unknown flag -> EINVAL");
	l.flags = 0;
	CHECK(ioctl(fd, IDGATE_IOC_LOOKUP, &l) == -1 && errno == ENOENT, "lookup: unknown flow -> ENOENT");
	close(fd);
	return 0;
}

/* Two executables, two uids, two cgroups, IPv4 and IPv6, concurrently. */
static int test_attrib(void)
{
	struct idgate_stats before, after;
	struct child a, b;
	struct idgate_lookup l;
	int go[2], fd = dev_open(), i;
	char buf[2] = "xx";

	set_config(fd, 0, 2);
	before = get_stats(fd);
	mkdir("/sys/fs/cgroup/idg-a", 0755);
	mkdir("/sys/fs/cgroup/idg-b", 0755);
	if (pipe(go))
		die("pipe");
	spawn_client(&a, "/bin/idg-client-a", "stay", SRV4, PORT_IN, 1001, 1001, "idg-a", go);
	spawn_client(&b, "/bin/idg-client-b", "stay", SRV6, PORT_IN, 1002, 1002, "idg-b", go);
	close(go[0]);
	if (write(go[1], buf, 2) != 2)	/* both connect at once */
		die("write go");
	if (read_tuple(&a) || read_tuple(&b))
		die("read tuple");
	CHECK(a.t.err == 0 && b.t.err == 0, "attrib: both clients connected (%s, %s)",
	      strerror(a.t.err), strerror(b.t.err));
	CHECK(a.t.mark == MARK && b.t.mark == MARK, "attrib: sockets carry mark %#x, %#x", a.t.mark, b.t.mark);

	CHECK(do_lookup(fd, &a.t, 1, &l) == 0, "attrib: peek IPv4 flow of client a");
	CHECK(do_lookup(fd, &a.t, 0, &l) == 0, "attrib: lookup IPv4 flow of client a");
	check_identity("attrib a (IPv4)", &l, a.pid, 1001, 1001, "/bin/idg-client-a", "idg-a");
	long long st = proc_start_ns(a.pid);
	long long d = (long long)l.start_time_ns - st;
	CHECK(d >= 0 && d < 1000000000LL / sysconf(_SC_CLK_TCK), "attrib a: start_time_ns %llu matches /proc stat (%lld)",
	      (unsigned long long)l.start_time_ns, st);
	CHECK(!(l.result_flags & IDGATE_RESULT_EXITED), "attrib a: not flagged as exited");
	CHECK(do_lookup(fd, &a.t, 0, &l) == -ENOENT, "attrib: second lookup of a -> ENOENT (consumed)");

	CHECK(do_lookup(fd, &b.t, 0, &l) == 0, "attrib: lookup IPv6 flow of client b");
	check_identity("attrib b (IPv6)", &l, b.pid, 1002, 1002, "/bin/idg-client-b", "idg-b");

	close(go[1]);
	for (i = 0; i < 2; i++)
		wait(NULL);
	after = get_stats(fd);
	CHECK(after.recorded - before.recorded == 2, "attrib: exactly 2 entries recorded (%llu)",
	      (unsigned long long)(after.recorded - before.recorded));
	close(fd);
	return 0;
}

/* A process that exits right after connect() is still attributed. */
static int test_exited(void)
{
	struct idgate_lookup l;
	struct child c;
	char path[64];
	int go[2], fd = dev_open(), status;

	set_config(fd, 0, 2);
	if (pipe(go))
		die("pipe");
	spawn_client(&c, "/bin/idg-client-a", "exit", SRV4, PORT_IN, 1003, 1003, NULL, go);
	close(go[0]);
	if (write(go[1], "x", 1) != 1 || read_tuple(&c))
		die("client");
	waitpid(c.pid, &status, 0);
	snprintf(path, sizeof(path), "/proc/%d", c.pid);
	CHECK(access(path, F_OK) != 0, "exited: %s is gone: a procfs lookup cannot attribute this flow", path);
	CHECK(do_lookup(fd, &c.t, 0, &l) == 0, "exited: flow of the exited process is found");
	check_identity("exited", &l, c.pid, 1003, 1003, "/bin/idg-client-a", NULL);
	CHECK(l.result_flags & IDGATE_RESULT_EXITED, "exited: result flagged EXITED (%#x)", l.result_flags);
	close(go[1]);
	close(fd);
	return 0;
}

/* The proxy's own connections and flows outside the set are not tagged. */
static int test_skip(void)
{
	struct idgate_stats before, after;
	struct idgate_lookup l;
	struct tuple t;
	int p[2], fd = dev_open(), s;
	pid_t proxy;

	if (pipe(p))
		die("pipe");
	proxy = fork();
	if (!proxy) {
		char c;

		close(p[1]);
		if (read(p[0], &c, 1) != 1)	/* wait until configured as the proxy */
			_exit(1);
		s = connect_to(SRV4, PORT_IN, 0, &t);
		_exit(s >= 0 && t.mark == 0 ? 0 : 1);
	}
	close(p[0]);
	set_config(fd, proxy, 2);
	before = get_stats(fd);
	if (write(p[1], "x", 1) != 1)
		die("write");
	int status;

	waitpid(proxy, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "skip: proxy's connection succeeds untagged (mark 0)");
	after = get_stats(fd);
	CHECK(after.skipped_proxy - before.skipped_proxy == 1 && after.recorded == before.recorded,
	      "skip: counted as skipped_proxy, nothing recorded");

	s = connect_to(SRV4, PORT_OUT, 0, &t);
	CHECK(s >= 0 && t.mark == 0, "skip: flow to port %d (outside the set) untagged", PORT_OUT);
	CHECK(do_lookup(fd, &t, 0, &l) == -ENOENT, "skip: flow outside the set not recorded");
	close(s);
	set_config(fd, 0, 0);
	s = connect_to(SRV4, PORT_IN, 0, &t);
	CHECK(s >= 0 && t.mark == 0 && do_lookup(fd, &t, 0, &l) == -ENOENT,
	      "skip: with rule_count 0 nothing is intercepted");
	close(s);
	close(fd);
	return 0;
}

/* Many short connections from several processes. */
static int flood_worker(int idx, int n, int claim_every, int pfd)
{
	struct idgate_lookup l;
	struct linger lg = { 1, 0 };
	long counts[3] = { 0, 0, 0 };	/* connected, claimed, claim hits */
	int fd = dev_open(), i, s;
	struct tuple t;

	for (i = 0; i < n; i++) {
		s = connect_to(idx % 2 ? SRV6 : SRV4, PORT_IN, 0, &t);
		if (s < 0) {
			fprintf(stderr, "flood: connect: %s\n", strerror(t.err));
			continue;
		}
		counts[0]++;
		if (claim_every && i % claim_every == 0) {
			counts[1]++;
			if (do_lookup(fd, &t, 0, &l) == 0 && l.tgid == (uint32_t)getpid())
				counts[2]++;
		}
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(s);
	}
	if (write(pfd, counts, sizeof(counts)) != sizeof(counts))
		return 1;
	return 0;
}

static unsigned long long read_sysfs_u64(const char *path)
{
	unsigned long long v = ~0ULL;
	FILE *f = fopen(path, "r");

	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = ~0ULL;
		fclose(f);
	}
	return v;
}

static int test_flood(int procs, int per_proc, int timeout_ms)
{
	struct idgate_stats b, a;
	long conn = 0, claimed = 0, hits = 0, c[3];
	int p[2], fd = dev_open(), i;
	double t0, dt;
	unsigned long long max_seen = 0;

	set_config(fd, 0, 2);
	b = get_stats(fd);
	if (pipe(p))
		die("pipe");
	t0 = now_s();
	for (i = 0; i < procs; i++) {
		if (!fork()) {
			close(p[0]);
			_exit(flood_worker(i, per_proc, 2, p[1]));
		}
	}
	close(p[1]);
	/* Sample the table size while the workers run. */
	for (;;) {
		struct pollfd pf = { p[0], POLLIN, 0 };
		unsigned long long e = read_sysfs_u64("/sys/kernel/idgate/stats/entries");

		if (e > max_seen && e != ~0ULL)
			max_seen = e;
		if (poll(&pf, 1, 50) > 0) {
			ssize_t r = read(p[0], c, sizeof(c));

			if (r == 0)
				break;
			if (r == sizeof(c)) {
				conn += c[0];
				claimed += c[1];
				hits += c[2];
			}
		}
	}
	while (wait(NULL) > 0)
		;
	dt = now_s() - t0;
	a = get_stats(fd);
	long total = (long)procs * per_proc;
	printf("flood: %ld connections (%ld ok) from %d processes in %.1f s (%.0f/s); claimed %ld, hits %ld\n",
	       total, conn, procs, dt, total / dt, claimed, hits);
	printf("flood: recorded %llu hits %llu misses %llu evictions %llu expired %llu entries %llu peak %llu (max %llu)\n",
	       a.recorded - b.recorded, a.hits - b.hits, a.misses - b.misses, a.evictions - b.evictions,
	       a.expired - b.expired, a.entries, a.peak_entries, a.max_entries);
	CHECK(conn == total, "flood: all %ld connections succeeded (%ld)", total, conn);
	CHECK(a.recorded - b.recorded == (unsigned long long)total && a.dropped == b.dropped,
	      "flood: every SYN recorded (%llu of %ld), none dropped", a.recorded - b.recorded, total);
	CHECK(a.lookups - b.lookups == (unsigned long long)claimed &&
	      a.hits - b.hits + a.misses - b.misses == (unsigned long long)claimed && a.hits - b.hits == (unsigned long long)hits,
	      "flood: lookups %llu == hits + misses == claims %ld", a.lookups - b.lookups, claimed);
	CHECK(a.peak_entries <= a.max_entries && max_seen <= a.max_entries,
	      "flood: table bound held (peak %llu, sampled max %llu, max_entries %llu)", a.peak_entries, max_seen,
	      a.max_entries);
	/* Unclaimed entries expire. */
	usleep((timeout_ms + 1500) * 1000);
	a = get_stats(fd);
	CHECK(a.entries == 0, "flood: no entry left after timeout (%llu)", a.entries);
	CHECK(a.recorded == a.hits + a.expired + a.evictions + a.flushed + a.entries,
	      "flood: recorded %llu == hits %llu + expired %llu + evictions %llu + flushed %llu + entries %llu",
	      a.recorded, a.hits, a.expired, a.evictions, a.flushed, a.entries);
	CHECK(a.lookups == a.hits + a.misses, "flood: lookups %llu == hits + misses", a.lookups);
	close(fd);
	return 0;
}

static void write_param(const char *name, unsigned int v)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/idgate/parameters/%s", name);
	f = fopen(path, "w");
	if (!f || fprintf(f, "%u\n", v) < 0 || fclose(f))
		die(path);
}

/* A full table evicts its oldest entries first. */
static int test_evict(void)
{
	enum { MAX = 16, N = 40 };
	struct idgate_stats b, a;
	struct idgate_lookup l;
	struct tuple t[N];
	int fd = dev_open(), s[N], i, oldest_gone = 0, newest_found = 0;
	unsigned long long old_max = read_sysfs_u64("/sys/module/idgate/parameters/max_entries");

	set_config(fd, 0, 2);
	write_param("max_entries", MAX);
	b = get_stats(fd);
	for (i = 0; i < N; i++)
		s[i] = connect_to(SRV4, PORT_IN, 0, &t[i]);
	a = get_stats(fd);
	CHECK(a.entries == MAX, "evict: table holds max_entries=%d after %d flows (%llu)", MAX, N, a.entries);
	/* Entries left by earlier tests (b.entries) are older still: evicted first. */
	CHECK(a.evictions - b.evictions == N + b.entries - MAX, "evict: %llu evictions (%llu)",
	      N + b.entries - MAX, a.evictions - b.evictions);
	for (i = 0; i < N; i++) {
		int r = do_lookup(fd, &t[i], 0, &l);

		if (i < N - MAX)
			oldest_gone += r == -ENOENT;
		else
			newest_found += r == 0 && l.tgid == (uint32_t)getpid();
	}
	CHECK(oldest_gone == N - MAX && newest_found == MAX, "evict: oldest %d gone (%d), newest %d kept (%d)",
	      N - MAX, oldest_gone, MAX, newest_found);
	write_param("max_entries", old_max);
	for (i = 0; i < N; i++)
		if (s[i] >= 0)
			close(s[i]);
	close(fd);
	return 0;
}

/* Hold the device open for @secs seconds (unload must be refused). */
static int test_hold(int secs)
{
	int fd = dev_open();

	printf("hold: %s open by pid %d\n", DEV, getpid());
	fflush(stdout);
	sleep(secs);
	close(fd);
	return 0;
}

/* Connect in a loop for @secs seconds while the module comes and goes. */
static int test_churn(int secs)
{
	struct linger lg = { 1, 0 };
	double end = now_s() + secs;
	struct idgate_lookup l;
	struct tuple t;
	long n = 0, found = 0;

	while (now_s() < end) {
		/* Every other connection goes without the device, so rmmod (which an open
		 * /dev/idgate pins) has windows even on a slow, loaded host. */
		int fd = n % 2 ? -1 : open(DEV, O_RDWR | O_CLOEXEC), s;

		if (fd >= 0)
			set_config(fd, 0, 2);
		s = connect_to(n % 4 < 2 ? SRV6 : SRV4, PORT_IN, 0, &t);
		if (fd >= 0) {
			if (s >= 0 && do_lookup(fd, &t, 0, &l) == 0)
				found++;
			close(fd);
		}
		if (s >= 0) {
			setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(s);
		}
		n++;
	}
	printf("churn: %ld connections, %ld looked up\n", n, found);
	return 0;
}

/* nftables redirect of marked flows to a proxy port: fail closed without a
 * listener; with one, the proxy finds the client's identity. */
static int test_redirect(int proxy_port)
{
	struct idgate_lookup l;
	struct tuple t;
	int fd = dev_open(), p[2], ready[2], s;
	pid_t proxy;

	set_config(fd, 0, 2);
	s = connect_to(SRV4, PORT_IN, 0, &t);
	CHECK(s < 0 && t.err == ECONNREFUSED, "redirect: no proxy listening: tagged flow refused (%s)",
	      strerror(t.err));
	s = connect_to(SRV4, PORT_OUT, 0, &t);
	CHECK(s >= 0, "redirect: untagged flow still connects directly");
	if (s >= 0)
		close(s);

	if (pipe(p) || pipe(ready))
		die("pipe");
	proxy = fork();
	if (!proxy) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(proxy_port) };
		struct sockaddr_storage peer;
		struct sockaddr_in orig;
		socklen_t len = sizeof(orig), plen = sizeof(peer);
		int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0), c, up, pfd = dev_open();

		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(ls, (void *)&sin, sizeof(sin)) || listen(ls, 16))
			_exit(1);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		c = accept(ls, (void *)&peer, &plen);
		if (c < 0 || getsockopt(c, SOL_IP, SO_ORIGINAL_DST, &orig, &len))
			_exit(2);
		memset(&t, 0, sizeof(t));
		t.family = AF_INET;
		memcpy(&t.src, &peer, sizeof(struct sockaddr_in));
		memcpy(&t.dst, &orig, sizeof(orig));
		memset(&l, 0, sizeof(l));
		if (do_lookup(pfd, &t, 0, &l))
			l.tgid = 0;
		/* The proxy's own upstream connection is not redirected. */
		up = connect_to(SRV4, PORT_IN, 0, &t);
		l.pad1 = up >= 0 && t.mark == 0;
		if (write(p[1], &l, sizeof(l)) != sizeof(l))
			_exit(3);
		_exit(0);
	}
	char r;

	if (read(ready[0], &r, 1) != 1)
		die("proxy not ready");
	set_config(fd, proxy, 2);
	s = connect_to(SRV4, PORT_IN, 0, &t);
	CHECK(s >= 0, "redirect: with the proxy listening, the tagged flow connects (%s)", strerror(t.err));
	memset(&l, 0, sizeof(l));
	if (read(p[0], &l, sizeof(l)) != sizeof(l))
		fail("redirect: no answer from the proxy");
	CHECK(l.tgid == (uint32_t)getpid(), "redirect: proxy looked up by peer + SO_ORIGINAL_DST: tgid %u == %d",
	      l.tgid, getpid());
	CHECK(!strcmp((const char *)l.exe, "/bin/idgate-test"), "redirect: proxy sees exe '%s'", l.exe);
	CHECK(l.pad1 == 1, "redirect: proxy's own upstream connection goes direct, untagged");
	waitpid(proxy, NULL, 0);
	if (s >= 0)
		close(s);
	set_config(fd, 0, 0);
	close(fd);
	return 0;
}

/* Leave @n unclaimed entries in this namespace (for the namespace-exit test):
 * flows to a listener on 127.0.0.1:8088 inside it. */
static int test_leave(int n)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(8088) };
	struct idgate_config c;
	struct tuple t;
	int fd = dev_open(), ls = socket(AF_INET, SOCK_STREAM, 0), i, ok = 0;

	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (bind(ls, (void *)&sin, sizeof(sin)) || listen(ls, 4096))
		die("leave: bind/listen");
	memset(&c, 0, sizeof(c));
	c.mark = MARK;
	c.mark_mask = MARK_MASK;
	c.rule_count = 1;
	c.rules[0].family = AF_INET;
	c.rules[0].prefix_len = 8;
	c.rules[0].addr[0] = 127;
	c.rules[0].port_min = 8088;
	c.rules[0].port_max = 8088;
	if (ioctl(fd, IDGATE_IOC_CONFIG, &c))
		die("leave: config");
	for (i = 0; i < n; i++) {
		int s = connect_to("127.0.0.1", 8088, 0, &t);

		if (s >= 0 && t.mark == MARK)
			ok++;
		if (s >= 0)
			close(s);
	}
	CHECK(ok == n, "leave: %d of %d flows tagged and left unclaimed", ok, n);
	close(fd);
	return 0;
}

/* procfs attribution, as a userspace fallback must do it: find the socket
 * inode of the IPv4 flow in /proc/net/tcp, then the process holding it by
 * scanning /proc/<pid>/fd, then its uid and exe. Returns the tgid or -1. */
static int procfs_lookup(const struct tuple *t, uid_t *uid, char *exe, size_t exelen)
{
	const struct sockaddr_in *src = (const void *)&t->src, *dst = (const void *)&t->dst;
	char line[512], want[64], path[600], link[64];
	unsigned long inode = 0;
	struct dirent *de;
	int found = -1;
	FILE *f;
	DIR *d;

	snprintf(want, sizeof(want), "%08X:%04X %08X:%04X", src->sin_addr.s_addr, ntohs(src->sin_port),
		 dst->sin_addr.s_addr, ntohs(dst->sin_port));
	f = fopen("/proc/net/tcp", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':');

		if (p && !strncmp(p + 2, want, strlen(want))) {
			if (sscanf(p + 2 + strlen(want), "%*s %*s %*s %*s %*s %*s %lu", &inode) != 1)
				inode = 0;
			break;
		}
	}
	fclose(f);
	if (!inode)
		return -1;
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	d = opendir("/proc");
	while (d && found < 0 && (de = readdir(d))) {
		struct dirent *fe;
		DIR *fd;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", de->d_name);
		fd = opendir(path);
		while (fd && (fe = readdir(fd))) {
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/%s/fd/%s", de->d_name, fe->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			if (n > 0 && (link[n] = 0, !strcmp(link, want))) {
				found = atoi(de->d_name);
				break;
			}
		}
		if (fd)
			closedir(fd);
	}
	if (d)
		closedir(d);
	if (found < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/status", found);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %*u %u", uid) == 1)
			break;
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/exe", found);
	ssize_t n = readlink(path, exe, exelen - 1);

	exe[n > 0 ? n : 0] = 0;
	return found;
}

/* Lookup cost, kmod vs procfs, for @n open IPv4 flows of this process. */
static int test_bench(int n)
{
	struct tuple *t = calloc(n, sizeof(*t));
	int *socks = calloc(n, sizeof(int)), *tgid = calloc(n, sizeof(int)), fd = dev_open(), i, agree = 0;
	struct idgate_lookup l;
	double t0, kmod_us, consume_us, procfs_us;
	char exe[256];
	uid_t uid;

	set_config(fd, 0, 2);
	for (i = 0; i < n; i++)
		socks[i] = connect_to(SRV4, PORT_IN, 0, &t[i]);
	t0 = now_s();
	for (i = 0; i < n; i++)
		do_lookup(fd, &t[i], 1, &l);
	kmod_us = (now_s() - t0) * 1e6 / n;
	t0 = now_s();
	for (i = 0; i < n; i++)
		tgid[i] = do_lookup(fd, &t[i], 0, &l) ? -1 : (int)l.tgid;
	consume_us = (now_s() - t0) * 1e6 / n;
	t0 = now_s();
	for (i = 0; i < n; i++)
		if (procfs_lookup(&t[i], &uid, exe, sizeof(exe)) == tgid[i] && tgid[i] == getpid() && uid == getuid())
			agree++;
	procfs_us = (now_s() - t0) * 1e6 / n;
	printf("bench: %d open flows: kmod peek %.1f us, kmod lookup (consume) %.1f us, procfs %.1f us per flow\n",
	       n, kmod_us, consume_us, procfs_us);
	CHECK(agree == n, "bench: kmod and procfs agree on all %d flows (kmod %.1f us vs procfs %.1f us per lookup)",
	      n, consume_us, procfs_us);
	for (i = 0; i < n; i++)
		if (socks[i] >= 0)
			close(socks[i]);
	free(t);
	free(socks);
	free(tgid);
	close(fd);
	return 0;
}

/* Accept and close connections on each port given, forever. */
static int serve(int argc, char **argv)
{
	int i;

	signal(SIGCHLD, SIG_IGN);
	for (i = 0; i < argc; i++) {
		if (fork())
			continue;
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[i])) };
		int one = 1, zero = 0, ls = socket(AF_INET6, SOCK_STREAM, 0);

		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(ls, (void *)&sin6, sizeof(sin6)) || listen(ls, 4096))
			die("serve: bind/listen");
		for (;;) {
			int c = accept(ls, NULL, NULL);

			if (c >= 0)
				close(c);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strncmp(base, "idg-client-", 11))
		return client_main(argc, argv);
	if (argc < 2) {
		fprintf(stderr, "usage: idgate-test version|config|attrib|exited|skip|flood P N T|hold S|churn S|redirect PORT|serve PORT...\n");
		return 2;
	}
	const char *t = argv[1];

	if (!strcmp(t, "serve"))
		return serve(argc - 2, argv + 2);
	alarm(600);	/* a hung test fails instead of stalling the VM */
	if (!strcmp(t, "version"))
		test_version();
	else if (!strcmp(t, "config"))
		test_config();
	else if (!strcmp(t, "attrib"))
		test_attrib();
	else if (!strcmp(t, "exited"))
		test_exited();
	else if (!strcmp(t, "skip"))
		test_skip();
	else if (!strcmp(t, "flood") && argc == 5)
		test_flood(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	else if (!strcmp(t, "hold") && argc == 3)
		test_hold(atoi(argv[2]));
	else if (!strcmp(t, "churn") && argc == 3)
		test_churn(atoi(argv[2]));
	else if (!strcmp(t, "evict"))
		test_evict();
	else if (!strcmp(t, "bench") && argc == 3)
		test_bench(atoi(argv[2]));
	else if (!strcmp(t, "leave") && argc == 3)
		test_leave(atoi(argv[2]));
	else if (!strcmp(t, "redirect") && argc == 3)
		test_redirect(atoi(argv[2]));
	else {
		fprintf(stderr, "unknown test %s\n", t);
		return 2;
	}
	return failures ? 1 : 0;
}
