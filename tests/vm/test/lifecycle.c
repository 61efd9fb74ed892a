// SPDX-License-Identifier: GPL-2.0
/* The device held open, connections across reloads, entries left in a namespace. */
#include "lib.h"

/* Hold the device open for @secs seconds (unload must be refused). */
int test_hold(int secs)
{
	int fd = dev_open();

	printf("hold: %s open by pid %d\n", DEV, getpid());
	fflush(stdout);
	sleep(secs);
	close(fd);
	return 0;
}

/* Connect in a loop for @secs seconds while the module comes and goes. */
int test_churn(int secs)
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

/* Leave @n unclaimed entries in this namespace (for the namespace-exit test):
 * flows to a listener on 127.0.0.1:8088 inside it. */
int test_leave(int n)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(8088) };
	struct idgate_rule r = { .family = AF_INET, .prefix_len = 8, .addr = { 127 }, .port_min = 8088, .port_max = 8088 };
	struct tuple t;
	int fd = dev_open(), ls = socket(AF_INET, SOCK_STREAM, 0), i, ok = 0;

	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (bind(ls, (void *)&sin, sizeof(sin)) || listen(ls, 4096))
		die("leave: bind/listen");
	errno = -configure(fd, 0, &r, 1);
	if (errno)
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
