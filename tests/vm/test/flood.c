// SPDX-License-Identifier: GPL-2.0
/* Many short connections, the table bound and eviction. */
#include "lib.h"

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

int test_flood(int procs, int per_proc, int timeout_ms)
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

/* A full table evicts its oldest entries first. */
int test_evict(void)
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
