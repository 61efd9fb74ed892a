// SPDX-License-Identifier: GPL-2.0
/* Output, the device, flows and counters: what every test group uses. */
#include "lib.h"

int failures;
static int passes;

void pass(const char *fmt, ...)
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

void fail(const char *fmt, ...)
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

void die(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

int dev_open(void)
{
	int fd = open(DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		die("open " DEV);
	return fd;
}

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

int do_lookup(int fd, const struct tuple *t, int peek, struct idgate_lookup *l)
{
	memset(l, 0, sizeof(*l));
	l->family = t->family;
	l->flags = peek ? IDGATE_LOOKUP_PEEK : 0;
	addr_bytes(&t->src, l->src_addr, &l->src_port);
	addr_bytes(&t->dst, l->dst_addr, &l->dst_port);
	return ioctl(fd, IDGATE_IOC_LOOKUP, l) ? -errno : 0;
}

void make_addr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
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
int connect_to(const char *ip, int port, int nonblock, struct tuple *t)
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

/* The tests' intercept set: 10.77.0.0/24 and fd77::/64, ports 8000-8099. */
void test_rules(struct idgate_rule r[2])
{
	memset(r, 0, 2 * sizeof(*r));
	r[0].family = AF_INET;
	r[0].prefix_len = 24;
	inet_pton(AF_INET, "10.77.0.0", r[0].addr);
	r[0].port_min = 8000;
	r[0].port_max = 8099;
	r[1].family = AF_INET6;
	r[1].prefix_len = 64;
	inet_pton(AF_INET6, "fd77::", r[1].addr);
	r[1].port_min = 8000;
	r[1].port_max = 8099;
}

int configure(int fd, uint32_t proxy_tgid, const struct idgate_rule *rules, unsigned int n)
{
	struct idgate_config c;

	memset(&c, 0, sizeof(c));
	c.mark = MARK;
	c.mark_mask = MARK_MASK;
	c.proxy_tgid = proxy_tgid;
	c.rule_count = n;
	c.rules = (uintptr_t)rules;
	return ioctl(fd, IDGATE_IOC_CONFIG, &c) ? -errno : 0;
}

void set_config(int fd, uint32_t proxy_tgid, int nrules)
{
	struct idgate_rule r[2];

	test_rules(r);
	errno = -configure(fd, proxy_tgid, r, nrules);
	if (errno)
		die("IDGATE_IOC_CONFIG");
}

struct idgate_stats get_stats(int fd)
{
	struct idgate_stats s;

	if (ioctl(fd, IDGATE_IOC_STATS, &s))
		die("IDGATE_IOC_STATS");
	return s;
}

double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

unsigned long long read_sysfs_u64(const char *path)
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

void write_param(const char *name, unsigned int v)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/idgate/parameters/%s", name);
	f = fopen(path, "w");
	if (!f || fprintf(f, "%u\n", v) < 0 || fclose(f))
		die(path);
}
