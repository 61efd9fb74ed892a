// SPDX-License-Identifier: GPL-2.0
/* Who opened a flow: executables, uids, cgroups, IPv4 and IPv6, exited processes. */
#include "lib.h"

/* Two executables, two uids, two cgroups, IPv4 and IPv6, concurrently. */
int test_attrib(void)
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
	spawn_client(&a, "/bin/idg-client-a", "stay", SRV4, PORT_IN, 1001, 1001, "idg-a", go, NULL);
	spawn_client(&b, "/bin/idg-client-b", "stay", SRV6, PORT_IN, 1002, 1002, "idg-b", go, NULL);
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
int test_exited(void)
{
	struct idgate_lookup l;
	struct child c;
	char path[64];
	int go[2], fd = dev_open(), status;

	set_config(fd, 0, 2);
	if (pipe(go))
		die("pipe");
	spawn_client(&c, "/bin/idg-client-a", "exit", SRV4, PORT_IN, 1003, 1003, NULL, go, NULL);
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

static void *named_thread_connect(void *arg)
{
	struct tuple *t = arg;

	prctl(PR_SET_NAME, "idg-worker");
	t->err = connect_to(SRV4, PORT_IN, 0, t) < 0 ? (t->err ? t->err : -1) : 0;
	return NULL;
}

/* A flow opened by a thread with a name of its own is reported with the
 * process's comm and pid (as /proc/<tgid>/comm shows it), the thread's id
 * as pid: the procfs backend sees the same process. */
int test_thread(void)
{
	struct idgate_lookup l;
	struct tuple t;
	pthread_t th;
	char comm[32] = "";
	int fd = dev_open();
	FILE *f;

	set_config(fd, 0, 2);
	memset(&t, 0, sizeof(t));
	if (pthread_create(&th, NULL, named_thread_connect, &t) || pthread_join(th, NULL))
		die("pthread");
	CHECK(t.err == 0, "thread: connected from a thread named idg-worker");
	CHECK(do_lookup(fd, &t, 0, &l) == 0, "thread: flow found");
	f = fopen("/proc/self/comm", "r");
	if (!f || !fgets(comm, sizeof(comm), f))
		die("/proc/self/comm");
	fclose(f);
	comm[strcspn(comm, "\n")] = 0;
	CHECK(!strcmp((const char *)l.comm, comm), "thread: comm '%s' == /proc/<tgid>/comm '%s'", l.comm, comm);
	CHECK(l.tgid == (uint32_t)getpid() && l.pid != l.tgid, "thread: tgid %u is the process, pid %u the thread",
	      l.tgid, l.pid);
	close(fd);
	return 0;
}
