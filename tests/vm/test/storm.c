// SPDX-License-Identifier: GPL-2.0
/*
 * Churn for the debug kernels: @procs processes open and close short
 * connections for @secs seconds, and every fourth connection is made by a
 * child that exits between its connect() and the parent's lookup. The
 * device is opened per lookup, so the module can be unloaded in between
 * (guest/churn.sh reloads it, tears namespaces down and kills the proxy
 * meanwhile); a missing device or configuration is counted, not fatal.
 */
#include "lib.h"

enum { CONNECTED, LOOKED_UP, EXITED_FOUND, NO_DEVICE, NCOUNT };

/* A child connects, reports its tuple and exits; the lookup comes after. */
static void exited_client(int fd, long *c)
{
	struct idgate_lookup l;
	struct tuple t;
	int p[2], status;
	pid_t pid;

	if (pipe(p))
		return;
	pid = fork();
	if (!pid) {
		int s = connect_to(SRV4, PORT_IN, 1, &t);

		if (write(p[1], &t, sizeof(t)) != sizeof(t))
			_exit(1);
		_exit(s >= 0 ? 0 : 1);
	}
	close(p[1]);
	if (pid > 0 && read(p[0], &t, sizeof(t)) == sizeof(t)) {
		waitpid(pid, &status, 0);
		if (!t.err) {
			c[CONNECTED]++;
			if (do_lookup(fd, &t, 0, &l) == 0 && l.tgid == (uint32_t)pid &&
			    (l.result_flags & IDGATE_RESULT_EXITED))
				c[EXITED_FOUND]++;
		}
	} else if (pid > 0) {
		waitpid(pid, &status, 0);
	}
	close(p[0]);
}

#define NMANY 10000

static void storm_worker(int idx, double end, int pfd)
{
	struct idgate_rule *many = many_rules(NMANY, idx + 1);
	struct linger lg = { 1, 0 };
	long c[NCOUNT] = { 0 };
	struct idgate_lookup l;
	struct tuple t;
	long n;

	for (n = 0; now_s() < end; n++) {
		int fd = access("/tmp/storm.pause", F_OK) ? open(DEV, O_RDWR | O_CLOEXEC) : -1, s;

		if (fd < 0) {
			/* Unloading (or gone): connections go on, recorded or not. */
			c[NO_DEVICE]++;
			s = connect_to(SRV4, PORT_IN, 0, &t);
			if (s >= 0) {
				c[CONNECTED]++;
				setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
				close(s);
			}
			continue;
		}
		/* A reloaded module has no configuration: set it again; one
		 * time in eight a large set (the same two rules among 10,000),
		 * so that sets are built, replaced and freed under the hook. */
		if (n % 8)
			set_config(fd, 0, 2);
		else if (configure(fd, 0, many, NMANY))
			die("storm: large config");
		if (n % 4 == 3) {
			exited_client(fd, c);
			close(fd);
			continue;
		}
		s = connect_to((idx + n) % 2 ? SRV6 : SRV4, PORT_IN, 0, &t);
		if (s >= 0) {
			c[CONNECTED]++;
			/* Every other flow is left unclaimed: eviction and expiry. */
			if (n % 2 && do_lookup(fd, &t, 0, &l) == 0)
				c[LOOKED_UP]++;
			setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(s);
		}
		close(fd);
	}
	if (write(pfd, c, sizeof(c)) != sizeof(c))
		_exit(1);
	_exit(0);
}

int test_storm(int secs, int procs)
{
	long total[NCOUNT] = { 0 }, c[NCOUNT];
	double end = now_s() + secs;
	int p[2], i, k;

	if (pipe(p))
		die("pipe");
	for (i = 0; i < procs; i++)
		if (!fork()) {
			close(p[0]);
			storm_worker(i, end, p[1]);
		}
	close(p[1]);
	while (read(p[0], c, sizeof(c)) == sizeof(c))
		for (k = 0; k < NCOUNT; k++)
			total[k] += c[k];
	while (wait(NULL) > 0)
		;
	printf("storm: %ld connections from %d processes in %d s, %ld looked up, %ld exited before the lookup and still attributed, %ld without the device (unloading)\n",
	       total[CONNECTED], procs, secs, total[LOOKED_UP], total[EXITED_FOUND], total[NO_DEVICE]);
	CHECK(total[CONNECTED] > 0 && total[LOOKED_UP] > 0, "storm: connections made and looked up across the churn");
	CHECK(total[EXITED_FOUND] > 0, "storm: flows of processes that exited before the lookup are attributed (%ld)",
	      total[EXITED_FOUND]);
	return 0;
}
