// SPDX-License-Identifier: GPL-2.0
/*
 * A large intercept set: thousands of (prefix, port range) pairs, IPv4 and
 * IPv6, nested and overlapping prefixes, repeated prefixes with other ports.
 * The module's decision for each probe (its SYN tagged or not) must be what
 * a plain scan of the rules says. Run in a namespace whose default routes go
 * to lo, so that any address can be connected to (the hook sees the SYN
 * before it goes nowhere).
 */
#include "lib.h"

static uint64_t rng_state;

static uint32_t rnd(void)
{
	/* xorshift64*: reproducible from the seed printed with the results. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (rng_state * 2685821657736338717ULL) >> 32;
}

static void clear_host_bits(struct idgate_rule *r)
{
	unsigned int b;

	for (b = r->prefix_len; b < 128; b++)
		r->addr[b / 8] &= ~(0x80 >> (b % 8));
}

/* @n rules: the tests' own two first (so the usual flows stay intercepted),
 * then random ones under 10.0.0.0/8 and fd00::/8 (and a /0 of each family
 * on one port). Addresses come from a small pool of bytes, so that prefixes
 * nest and repeat. */
struct idgate_rule *many_rules(unsigned int n, uint64_t seed)
{
	static const uint8_t v4_lens[] = { 12, 16, 20, 24, 26, 28, 30, 32 };
	static const uint8_t v6_lens[] = { 16, 32, 48, 56, 64, 80, 96, 112, 120, 128 };
	struct idgate_rule *r = calloc(n, sizeof(*r));
	unsigned int i, b;

	if (!r || n < 4)
		die("many_rules");
	rng_state = seed;
	test_rules(r);
	r[2] = (struct idgate_rule){ .family = AF_INET, .prefix_len = 0, .port_min = 1, .port_max = 1 };
	r[3] = (struct idgate_rule){ .family = AF_INET6, .prefix_len = 0, .port_min = 2, .port_max = 2 };
	for (i = 4; i < n; i++) {
		int v6 = rnd() % 2;

		r[i].family = v6 ? AF_INET6 : AF_INET;
		r[i].prefix_len = v6 ? v6_lens[rnd() % sizeof(v6_lens)] : v4_lens[rnd() % sizeof(v4_lens)];
		r[i].addr[0] = v6 ? 0xfd : 10;
		for (b = 1; b < (v6 ? 16u : 4u); b++)
			r[i].addr[b] = rnd() % 8;
		clear_host_bits(&r[i]);
		r[i].port_min = 1000 + rnd() % 2000;
		r[i].port_max = r[i].port_min + (rnd() % 100 ? rnd() % 20 : rnd() % 3000);
	}
	return r;
}

static int rule_matches(const struct idgate_rule *r, int family, const uint8_t *addr, int port)
{
	unsigned int bytes = r->prefix_len / 8, bits = r->prefix_len % 8;

	if (r->family != family || port < r->port_min || port > r->port_max || memcmp(addr, r->addr, bytes))
		return 0;
	return !bits || !((addr[bytes] ^ r->addr[bytes]) & (0xff00 >> bits));
}

static int scan(const struct idgate_rule *r, unsigned int n, int family, const uint8_t *addr, int port)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (rule_matches(&r[i], family, addr, port))
			return 1;
	return 0;
}

struct probe {
	int family, port;
	uint8_t addr[16];
};

/* Near a random rule: an address inside its prefix (or, one time in four,
 * anywhere under 10/8 or fd00::/8), a port at or just past an edge of its
 * range (or anywhere). */
static void make_probe(const struct idgate_rule *r, unsigned int n, struct probe *p)
{
	const struct idgate_rule *near = &r[4 + rnd() % (n - 4)];
	unsigned int alen, b;

	memset(p, 0, sizeof(*p));
	p->family = near->family;
	alen = p->family == AF_INET ? 4 : 16;
	memcpy(p->addr, near->addr, alen);
	for (b = rnd() % 4 ? near->prefix_len : 8; b < alen * 8; b++)
		if (rnd() % 2)
			p->addr[b / 8] |= 0x80 >> (b % 8);
		else
			p->addr[b / 8] &= ~(0x80 >> (b % 8));
	switch (rnd() % 5) {
	case 0: p->port = near->port_min - 1; break;
	case 1: p->port = near->port_min; break;
	case 2: p->port = near->port_max; break;
	case 3: p->port = near->port_max + 1; break;
	default: p->port = 1 + rnd() % 65535; break;
	}
	if (p->port < 1 || p->port > 65535)
		p->port = near->port_min;
}

/* Tagged? -1 if the SYN could not be sent. */
static int probe_tagged(const struct probe *p)
{
	struct sockaddr_storage ss;
	struct linger lg = { 1, 0 };
	socklen_t len = sizeof(unsigned int);
	unsigned int mark = 0;
	char ip[INET6_ADDRSTRLEN];
	int s, ret;

	inet_ntop(p->family, p->addr, ip, sizeof(ip));
	make_addr(ip, p->port, &ss, &len);
	s = socket(p->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket");
	if (connect(s, (void *)&ss, len) && errno != EINPROGRESS) {
		close(s);
		return -1;
	}
	len = sizeof(mark);
	ret = getsockopt(s, SOL_SOCKET, SO_MARK, &mark, &len) ? -1 : (mark & MARK_MASK) == MARK;
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(s);
	return ret;
}

/* Connections per second to the probes that no rule matches (untagged
 * either way, so the rate differs only by the hook's search). */
static double untagged_rate(const struct probe *p, const int *want, unsigned int n)
{
	unsigned int i, done = 0;
	double t0 = now_s();

	for (i = 0; i < n; i++)
		if (!want[i] && probe_tagged(&p[i]) >= 0)
			done++;
	return done / (now_s() - t0);
}

#define ROUNDS 3

/* The round whose ratio n / 2 is the median of the three. */
static unsigned int middle_round(const double *n, const double *two)
{
	double a = n[0] / two[0], b = n[1] / two[1], c = n[2] / two[2];

	if ((a <= b && b <= c) || (c <= b && b <= a))
		return 1;
	if ((b <= a && a <= c) || (c <= a && a <= b))
		return 0;
	return 2;
}

/* "ruleset N PROBES": N rules, PROBES probes compared with a scan, then
 * the connect rate with the N rules and with the tests' 2, alternating. */
int test_ruleset(unsigned int n, unsigned int nprobes)
{
	uint64_t seed = (uint64_t)time(NULL) * 2654435761u | 1;
	struct idgate_rule *r = many_rules(n, seed);
	struct probe *p = calloc(nprobes, sizeof(*p));
	int *want = calloc(nprobes, sizeof(*want));
	unsigned int i, tagged = 0, untagged = 0, wrong = 0, failed = 0;
	struct idgate_config g;
	int fd = dev_open(), ret;
	double t0, with_n, with_2, rate_n[ROUNDS], rate_2[ROUNDS];

	if (!p || !want)
		die("calloc");
	t0 = now_s();
	ret = configure(fd, 0, r, n);
	CHECK(ret == 0, "ruleset: %u rules (IPv4 and IPv6) configured in %.1f ms (%s)", n, (now_s() - t0) * 1e3,
	      strerror(-ret));
	memset(&g, 0, sizeof(g));
	CHECK(ioctl(fd, IDGATE_IOC_GET_CONFIG, &g) == 0 && g.rule_count == n, "ruleset: GET_CONFIG says %u rules",
	      g.rule_count);
	for (i = 0; i < nprobes; i++)
		make_probe(r, n, &p[i]);
	for (i = 0; i < nprobes; i++) {
		int got = probe_tagged(&p[i]);

		want[i] = scan(r, n, p[i].family, p[i].addr, p[i].port);
		if (got < 0) {
			failed++;
		} else if (got != want[i]) {
			char ip[INET6_ADDRSTRLEN];

			if (wrong++ < 5) {
				inet_ntop(p[i].family, p[i].addr, ip, sizeof(ip));
				printf("ruleset: [%s]:%d: module says %s, the rules %s\n", ip, p[i].port,
				       got ? "tagged" : "not tagged", want[i] ? "match" : "do not");
			}
		} else {
			want[i] ? tagged++ : untagged++;
		}
	}
	CHECK(!wrong && !failed && tagged > nprobes / 10 && untagged > nprobes / 10,
	      "ruleset: %u probes (seed %#llx): %u tagged, %u not, as a scan of the rules says (%u differ, %u not sent)",
	      nprobes, (unsigned long long)seed, tagged, untagged, wrong, failed);
	/* Alternating, so that neither set always runs on a warmer or
	 * quieter machine; the middle round of three by ratio.
	 */
	for (i = 0; i < ROUNDS; i++) {
		if (i && configure(fd, 0, r, n))
			die("ruleset: configure");
		rate_n[i] = untagged_rate(p, want, nprobes);
		set_config(fd, 0, 2);
		rate_2[i] = untagged_rate(p, want, nprobes);
	}
	i = middle_round(rate_n, rate_2);
	with_n = rate_n[i];
	with_2 = rate_2[i];
	printf("bench: ruleset: connect() + close to the %u probes no rule matches: %.0f/s with %u rules, %.0f/s with 2 (%.2fx, middle of %d alternating rounds)\n",
	       untagged, with_n, n, with_2, with_n / with_2, ROUNDS);
	set_config(fd, 0, 0);
	free(want);
	free(p);
	free(r);
	close(fd);
	return 0;
}
