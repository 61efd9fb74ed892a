// SPDX-License-Identifier: GPL-2.0
/* The proxy's view through an nftables redirect, and fail closed without it. */
#include "lib.h"

/* nftables redirect of marked flows to a proxy port: fail closed without a
 * listener; with one, the proxy finds the client's identity. */
int test_redirect(int proxy_port)
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
