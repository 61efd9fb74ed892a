// SPDX-License-Identifier: GPL-2.0
/* Version, configuration validation, and what is not intercepted. */
#include "lib.h"

int test_version(void)
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

int test_config(void)
{
	struct idgate_rule r[1], two[2], got[4];
	struct idgate_config c, g;
	struct idgate_lookup l;
	int fd = dev_open();

#define BAD(desc, mutate) do {						\
		memset(&c, 0, sizeof(c));				\
		memset(r, 0, sizeof(r));				\
		c.mark = MARK; c.mark_mask = MARK_MASK; c.rule_count = 1; \
		c.rules = (uintptr_t)r;					\
		r[0].family = AF_INET; r[0].prefix_len = 8;		\
		r[0].addr[0] = 10; r[0].port_max = 65535;		\
		mutate;							\
		CHECK(ioctl(fd, IDGATE_IOC_CONFIG, &c) == -1 && errno == EINVAL, \
		      "config: %s -> EINVAL", desc);			\
	} while (0)
	BAD("mark outside mask", c.mark = 0x1000);
	BAD("zero mark", c.mark = 0);
	BAD("bad family", r[0].family = 3);
	BAD("prefix too long", r[0].prefix_len = 33);
	BAD("host bits set", r[0].addr[3] = 1);
	BAD("port_min > port_max", (r[0].port_min = 10, r[0].port_max = 9));
	BAD("rule_count > max", c.rule_count = IDGATE_MAX_RULES + 1);
	BAD("flags set", c.flags = 1);
	BAD("rule_room set", c.rule_room = 1);
	BAD("rule pad set", r[0].pad = 1);
	memset(&c, 0, sizeof(c));
	c.mark = MARK;
	c.mark_mask = MARK_MASK;
	c.rule_count = 1;
	c.rules = 8;	/* no such user address */
	CHECK(ioctl(fd, IDGATE_IOC_CONFIG, &c) == -1 && errno == EFAULT, "config: unreadable rules -> EFAULT");
	c.rules = (uintptr_t)r;
	memset(r, 0, sizeof(r));
	r[0].family = AF_INET;
	c.proxy_tgid = 999999;
	CHECK(ioctl(fd, IDGATE_IOC_CONFIG, &c) == -1 && errno == ESRCH, "config: unknown proxy_tgid -> ESRCH");

	set_config(fd, getpid(), 2);
	test_rules(two);
	memset(&g, 0xff, sizeof(g));
	memset(got, 0xee, sizeof(got));
	g.flags = 0;
	g.rule_room = 4;
	g.rules = (uintptr_t)got;
	CHECK(ioctl(fd, IDGATE_IOC_GET_CONFIG, &g) == 0 && g.mark == MARK && g.mark_mask == MARK_MASK &&
	      g.rule_count == 2 && g.proxy_tgid == (uint32_t)getpid() && !memcmp(got, two, sizeof(two)) &&
	      got[2].family == 0xee, "config: GET_CONFIG returns what was set, and writes only the rules in force");
	memset(got, 0xee, sizeof(got));
	g.flags = 0;
	g.rule_room = 1;
	g.rules = (uintptr_t)got;
	CHECK(ioctl(fd, IDGATE_IOC_GET_CONFIG, &g) == 0 && g.rule_count == 2 && !memcmp(got, two, sizeof(two[0])) &&
	      got[1].family == 0xee, "config: GET_CONFIG with room for 1 of 2 rules writes 1 and says 2");

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

/* The proxy's own connections and flows outside the set are not tagged. */
int test_skip(void)
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

/* The module owns only the mark bits of its mask: a socket's other mark bits
 * (WireGuard, policy routing) survive the tag, bits inside the mask are
 * replaced by the tag. */
int test_markbits(void)
{
	struct sockaddr_storage ss;
	struct idgate_lookup l;
	struct tuple t;
	unsigned int preset = 0x10201, mark = 0;
	socklen_t len, slen = sizeof(mark);
	int fd = dev_open(), s;

	set_config(fd, 0, 2);
	memset(&t, 0, sizeof(t));
	memset(&ss, 0, sizeof(ss));
	((struct sockaddr_in *)&ss)->sin_family = AF_INET;
	((struct sockaddr_in *)&ss)->sin_port = htons(PORT_IN);
	inet_pton(AF_INET, SRV4, &((struct sockaddr_in *)&ss)->sin_addr);
	len = sizeof(struct sockaddr_in);
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_MARK, &preset, sizeof(preset)))
		die("socket with SO_MARK");
	CHECK(connect(s, (void *)&ss, len) == 0, "markbits: connected with mark %#x preset", preset);
	getsockopt(s, SOL_SOCKET, SO_MARK, &mark, &slen);
	CHECK(mark == ((preset & ~MARK_MASK) | MARK), "markbits: mark %#x == %#x (bits outside %#x kept, inside replaced by %#x)",
	      mark, (preset & ~MARK_MASK) | MARK, MARK_MASK, MARK);
	t.family = AF_INET;
	slen = sizeof(t.src);
	getsockname(s, (void *)&t.src, &slen);
	t.dst = ss;
	CHECK(do_lookup(fd, &t, 0, &l) == 0 && l.tgid == (uint32_t)getpid(), "markbits: the flow was recorded");
	close(s);
	close(fd);
	return 0;
}

/* A stand-in for one idgate process: its own /dev/idgate file, driven by
 * one-byte commands: 'c' configure with itself as the proxy, 'z' configure
 * with no proxy, 'q' close the file, 'x' connect to an intercepted
 * destination, each answered with the socket's mark (or ~0 on failure);
 * 'r' connect 200 times from a thread while reconfiguring (as a reload
 * does), answered with how many of those connections were tagged. */
struct stand_in {
	pid_t pid;
	int cmd, reply;
};

struct reload_race {
	volatile int done;
	uint32_t tagged;
};

static void *connect_while_reloading(void *arg)
{
	struct reload_race *rr = arg;
	struct tuple t;
	int i, s;

	for (i = 0; i < 200; i++) {
		s = connect_to(SRV4, PORT_IN, 0, &t);
		if (s < 0 || t.mark)
			rr->tagged++;
		if (s >= 0)
			close(s);
	}
	rr->done = 1;
	return NULL;
}

static void stand_in_start(struct stand_in *p)
{
	int c[2], r[2];

	if (pipe(c) || pipe(r))
		die("pipe");
	p->pid = fork();
	if (p->pid < 0)
		die("fork");
	if (!p->pid) {
		int fd = dev_open(), s;
		struct tuple t;
		uint32_t mark;
		char op;

		close(c[1]);
		close(r[0]);
		while (read(c[0], &op, 1) == 1) {
			mark = 0;
			if (op == 'c' || op == 'z') {
				set_config(fd, op == 'c' ? getpid() : 0, 2);
			} else if (op == 'q') {
				close(fd);
			} else if (op == 'r') {
				struct reload_race rr = { 0, 0 };
				pthread_t th;

				if (pthread_create(&th, NULL, connect_while_reloading, &rr))
					_exit(1);
				while (!rr.done)
					set_config(fd, getpid(), 2);
				pthread_join(th, NULL);
				mark = rr.tagged;
			} else {
				s = connect_to(SRV4, PORT_IN, 0, &t);
				mark = s >= 0 ? t.mark : ~0U;
				if (s >= 0)
					close(s);
			}
			if (write(r[1], &mark, sizeof(mark)) != sizeof(mark))
				_exit(1);
		}
		_exit(0);
	}
	close(c[0]);
	close(r[1]);
	p->cmd = c[1];
	p->reply = r[0];
}

static uint32_t stand_in(struct stand_in *p, char op)
{
	uint32_t mark = ~0U;

	if (write(p->cmd, &op, 1) != 1 || read(p->reply, &mark, sizeof(mark)) != sizeof(mark))
		die("stand-in proxy");
	return mark;
}

/* An upgrade: the successor configures the module while the old process
 * still serves its open flows. Both processes' own connections stay untagged
 * as long as each keeps its file open; a process whose file is closed, or
 * that configured no proxy, is tagged like any other. */
int test_handover(void)
{
	struct stand_in old, next;
	struct idgate_stats before, after;
	int fd = dev_open();

	stand_in_start(&old);
	stand_in_start(&next);
	stand_in(&old, 'c');
	CHECK(stand_in(&old, 'x') == 0, "handover: the running proxy's own connection is untagged");
	before = get_stats(fd);
	stand_in(&next, 'c');
	CHECK(stand_in(&next, 'x') == 0, "handover: the successor's own connection is untagged");
	CHECK(stand_in(&old, 'x') == 0, "handover: after the successor configured, the old process's own connection is untagged still");
	CHECK(stand_in(&next, 'r') == 0, "handover: none of 200 connections is tagged while the proxy reconfigures");
	after = get_stats(fd);
	CHECK(after.recorded == before.recorded && after.skipped_proxy - before.skipped_proxy == 202,
	      "handover: nothing recorded, 202 skipped_proxy (%llu recorded, %llu skipped)",
	      (unsigned long long)(after.recorded - before.recorded),
	      (unsigned long long)(after.skipped_proxy - before.skipped_proxy));
	stand_in(&old, 'q');
	CHECK(stand_in(&old, 'x') == MARK, "handover: once the old process closed its file, its connection is tagged");
	CHECK(stand_in(&next, 'x') == 0, "handover: the successor's connection is untagged still");
	stand_in(&next, 'z');
	CHECK(stand_in(&next, 'x') == MARK, "handover: a process that configured without a proxy_tgid is tagged");
	close(old.cmd);
	close(next.cmd);
	waitpid(old.pid, NULL, 0);
	waitpid(next.pid, NULL, 0);
	set_config(fd, 0, 0);
	close(fd);
	return 0;
}
