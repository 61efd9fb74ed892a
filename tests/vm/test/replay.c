// SPDX-License-Identifier: GPL-2.0
/* A socket's record is its own: a tagged socket that connects again (after
 * connect(AF_UNSPEC), or after a refused connect()) from a source port it
 * holds must not be looked up as whoever recorded that 4-tuple before it. */
#include "lib.h"

#define PORT_CLOSED 8081	/* in the intercept set, nothing listens: refused */
#define PORT_CLOSED2 8082

static int port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
					      : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* The attacker, as uid @uid: bind the victim's source address and port (as
 * /proc/net/tcp shows them to everyone), get the socket
 * tagged by a connect to @ip:@tag_port, let go of that flow (connect(AF_UNSPEC)
 * when @unspec, else the refused connect already did), then connect to the
 * victim's destination @ip:@dst_port. Reports the final flow's tuple. */
static pid_t attacker(const struct sockaddr_storage *victim_src, const char *ip, int tag_port, int dst_port, int unspec,
		      uid_t uid, int out)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid)
		return pid;
	struct sockaddr_storage dst;
	struct sockaddr unspec_addr = { .sa_family = AF_UNSPEC };
	struct tuple t;
	socklen_t len, slen;
	int s, one = 1;

	if (setgroups(0, NULL) || setgid(uid) || setuid(uid))
		die("attacker: setuid");
	memset(&t, 0, sizeof(t));
	len = victim_src->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	s = socket(victim_src->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (const void *)victim_src, len))
		die("attacker: bind the victim's source port");
	make_addr(ip, tag_port, &dst, &len);
	connect(s, (void *)&dst, len);	/* refused or not: the SYN went out and tagged the socket */
	if (unspec && connect(s, &unspec_addr, sizeof(unspec_addr)))
		die("attacker: connect(AF_UNSPEC)");
	make_addr(ip, dst_port, &dst, &len);
	t.family = dst.ss_family;
	t.err = connect(s, (void *)&dst, len) ? errno : 0;
	slen = sizeof(t.src);
	getsockname(s, (void *)&t.src, &slen);
	t.dst = dst;
	slen = sizeof(t.mark);
	getsockopt(s, SOL_SOCKET, SO_MARK, &t.mark, &slen);
	if (write(out, &t, sizeof(t)) != sizeof(t))
		_exit(1);
	_exit(0);
}

/* Victim (uid 1001, idg-client-a) connects to @ip:@dst_port, which refuses
 * before any lookup; the attacker (uid 1002) replays from its source port. */
static void replay(const char *name, const char *ip, int dst_port, int tag_port, int unspec)
{
	struct idgate_lookup l;
	struct child v;
	struct tuple t;
	int go[2], out[2], fd = dev_open(), status;
	pid_t a;

	set_config(fd, 0, 2);
	if (pipe(go) || pipe(out))
		die("pipe");
	/* "exit": a non-blocking connect, then the process exits: the socket is
	 * gone at once (refused in SYN_SENT), its entry stays for the proxy. */
	spawn_client(&v, "/bin/idg-client-a", "exit", ip, dst_port, 1001, 1001, NULL, go, NULL);
	close(go[0]);
	if (write(go[1], "x", 1) != 1 || read_tuple(&v))
		die("victim");
	waitpid(v.pid, &status, 0);
	close(go[1]);
	CHECK(v.t.mark == MARK, "%s: the victim's flow to %s:%d is tagged", name, ip, dst_port);
	CHECK(do_lookup(fd, &v.t, 1, &l) == 0 && l.uid == 1001, "%s: the victim's entry waits (uid %u, port %d)",
	      name, l.uid, port_of(&v.t.src));
	usleep(100000);	/* the refusal has arrived: the port is free */

	a = attacker(&v.t.src, ip, tag_port, dst_port, unspec, 1002, out[1]);
	close(out[1]);
	if (read(out[0], &t, sizeof(t)) != sizeof(t))
		die("attacker");
	waitpid(a, &status, 0);
	close(out[0]);
	CHECK(port_of(&t.src) == port_of(&v.t.src) && t.mark == MARK,
	      "%s: the attacker's socket reached %s:%d from the victim's port %d, tagged (%#x)", name, ip, dst_port,
	      port_of(&t.src), t.mark);
	memset(&l, 0, sizeof(l));
	if (do_lookup(fd, &t, 0, &l)) {
		fail("%s: the attacker's flow has no record", name);
	} else {
		CHECK(l.uid == 1002 && l.tgid == (uint32_t)a,
		      "%s: the flow is looked up as the attacker (uid %u == 1002, tgid %u == %d), not the victim (uid 1001, tgid %d)",
		      name, l.uid, l.tgid, a, v.pid);
	}
	close(fd);
}

int test_replay(void)
{
	/* The tagging connect succeeds, connect(AF_UNSPEC) drops it. */
	replay("replay after AF_UNSPEC (IPv4)", SRV4, PORT_CLOSED, PORT_IN, 1);
	/* The tagging connect is refused; a second connect() follows. */
	replay("replay by a second connect (IPv6)", SRV6, PORT_CLOSED, PORT_CLOSED2, 0);
	return 0;
}
