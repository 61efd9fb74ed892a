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

static int stat_of(const char *path, struct stat *st)
{
	return stat(path, st) ? -errno : 0;
}

/* Spawn @exe (with @fake_from's file bind-mounted over it, if given), look
 * its flow up (peek, then consume), and check that the record names the
 * file @want: the device and inode that stat(2) of @want reports. */
static void check_exe_id(const char *name, const char *exe, const char *fake_from, const char *want)
{
	struct idgate_lookup peek, l;
	struct stat st, proc_st;
	char proc_exe[64];
	struct child c;
	int go[2], fd = dev_open();

	set_config(fd, 0, 2);
	if (pipe(go))
		die("pipe");
	spawn_client(&c, exe, "stay", SRV4, PORT_IN, 1004, 1004, NULL, go, fake_from);
	close(go[0]);
	if (write(go[1], "x", 1) != 1 || read_tuple(&c))
		die("client");
	snprintf(proc_exe, sizeof(proc_exe), "/proc/%d/exe", c.pid);
	if (stat_of(want, &st) || stat_of(proc_exe, &proc_st))
		die("stat");
	CHECK(c.t.err == 0 && do_lookup(fd, &c.t, 1, &peek) == 0 && do_lookup(fd, &c.t, 0, &l) == 0,
	      "%s: flow recorded and found", name);
	CHECK(!strcmp((const char *)l.exe, exe), "%s: exe path '%s' == '%s'", name, l.exe, exe);
	CHECK((l.result_flags & IDGATE_RESULT_EXE_ID) && l.exe_dev == (uint64_t)st.st_dev &&
	      l.exe_ino == (uint64_t)st.st_ino,
	      "%s: exe_dev:exe_ino %llu:%llu == stat(%s) %llu:%llu (flags %#x)", name,
	      (unsigned long long)l.exe_dev, (unsigned long long)l.exe_ino, want,
	      (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, l.result_flags);
	CHECK(peek.exe_dev == l.exe_dev && peek.exe_ino == l.exe_ino && (peek.result_flags & IDGATE_RESULT_EXE_ID),
	      "%s: a peek reports the same device and inode", name);
	CHECK(proc_st.st_dev == st.st_dev && proc_st.st_ino == st.st_ino,
	      "%s: stat(%s) agrees (%llu:%llu)", name, proc_exe, (unsigned long long)proc_st.st_dev,
	      (unsigned long long)proc_st.st_ino);
	close(go[1]);
	waitpid(c.pid, NULL, 0);
	close(fd);
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	ssize_t n;

	if (in < 0 || out < 0)
		die("copy_file: open");
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n)
			die("copy_file: write");
	if (n < 0 || close(in) || close(out))
		die("copy_file");
}

/* An executable on overlayfs: stat(2) reports a device and inode that
 * overlayfs maps from its layers (the overlay's own device when all layers
 * share one filesystem, the layer's otherwise), not those of the overlay
 * inode's superblock; the record must agree with stat. @samefs: lower and
 * upper layers on one tmpfs, else on two. */
static void exe_on_overlay(int samefs)
{
	const char *base = samefs ? "/tmp/ovl-same" : "/tmp/ovl-split";
	char lower[64], upper[64], merged[96], opts[256], exe[128];
	struct stat st, mst;

	mkdir(base, 0755);
	if (mount("tmpfs", base, "tmpfs", 0, NULL))
		die("mount tmpfs");
	snprintf(lower, sizeof(lower), "%s/lower", base);
	snprintf(upper, sizeof(upper), "%s/up", base);
	snprintf(merged, sizeof(merged), "%s/merged", base);
	mkdir(lower, 0755);
	mkdir(upper, 0755);
	mkdir(merged, 0755);
	if (!samefs && mount("tmpfs", lower, "tmpfs", 0, NULL))
		die("mount tmpfs");
	snprintf(exe, sizeof(exe), "%s/idg-client-o", lower);
	copy_file("/bin/idg-client-a", exe);
	snprintf(exe, sizeof(exe), "%s/u", upper);
	mkdir(exe, 0755);
	snprintf(exe, sizeof(exe), "%s/w", upper);
	mkdir(exe, 0755);
	snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s/u,workdir=%s/w", lower, upper, upper);
	if (mount("overlay", merged, "overlay", 0, opts)) {
		if (errno == ENODEV)
			printf("exeid: note: no overlayfs in this kernel: its case not run\n");
		else
			fail("exeid: mount overlay (%s): %s", opts, strerror(errno));
		umount2(base, MNT_DETACH);
		return;
	}
	snprintf(exe, sizeof(exe), "%s/idg-client-o", merged);
	if (stat(exe, &st) || stat(merged, &mst))
		die("stat overlay");
	printf("exeid: overlayfs, %s: stat(%s) dev %u:%u ino %llu; the overlay's own device %u:%u\n",
	       samefs ? "layers on one filesystem" : "layers on two filesystems", exe, major(st.st_dev),
	       minor(st.st_dev), (unsigned long long)st.st_ino, major(mst.st_dev), minor(mst.st_dev));
	check_exe_id(samefs ? "exeid overlayfs (one filesystem)" : "exeid overlayfs (two filesystems)", exe, NULL, exe);
	umount2(merged, MNT_DETACH);
	if (!samefs)
		umount2(lower, MNT_DETACH);
	umount2(base, MNT_DETACH);
}

/* The executable's device and inode are the file's, whatever path it ran
 * by: another file bind-mounted over /bin/idg-client-a in a user and mount
 * namespace of the user's own reads /bin/idg-client-a (in the record as in
 * /proc/<pid>/exe), and has idg-client-b's device and inode. */
int test_exeid(void)
{
	struct stat a, b;

	check_exe_id("exeid real", "/bin/idg-client-a", NULL, "/bin/idg-client-a");
	check_exe_id(have_user_namespaces() ? "exeid fake (user namespace)" : "exeid fake (mount namespace, no userns here)",
		     "/bin/idg-client-a", "/bin/idg-client-b", "/bin/idg-client-b");
	if (stat("/bin/idg-client-a", &a) || stat("/bin/idg-client-b", &b))
		die("stat");
	CHECK(a.st_ino != b.st_ino || a.st_dev != b.st_dev, "exeid: the two files differ in device or inode");
	exe_on_overlay(1);
	exe_on_overlay(0);
	return 0;
}
