// SPDX-License-Identifier: GPL-2.0
/* The client half of the identity tests: a copy of idgate-test run under
 * another name (idg-client-a, idg-client-b), so that flows come from a
 * different executable; and what its identity must be. */
#include "lib.h"

struct thread_connect {
	const char *ip;
	int port, s;
	struct tuple t;
};

static void *thread_connect(void *arg)
{
	struct thread_connect *tc = arg;

	prctl(PR_SET_NAME, "idg-worker");
	tc->s = connect_to(tc->ip, tc->port, 0, &tc->t);
	return NULL;
}

/* Client half, run as "idg-client-X MODE IP PORT RESULT_FD GO_FD":
 * waits for a byte on GO_FD, connects, writes its struct tuple to RESULT_FD,
 * then (mode "stay") waits for GO_FD to close, or (mode "exit") exits. Mode
 * "thread" is "stay" with the connection made by a thread named idg-worker. */
int client_main(int argc, char **argv)
{
	struct tuple t;
	char c;
	int s;

	if (argc != 6)
		return 2;
	int rfd = atoi(argv[4]), go = atoi(argv[5]);

	if (read(go, &c, 1) != 1)
		return 3;
	if (!strcmp(argv[1], "thread")) {
		struct thread_connect tc = { .ip = argv[2], .port = atoi(argv[3]) };
		pthread_t th;

		if (pthread_create(&th, NULL, thread_connect, &tc) || pthread_join(th, NULL))
			return 5;
		s = tc.s;
		t = tc.t;
	} else {
		s = connect_to(argv[2], atoi(argv[3]), !strcmp(argv[1], "exit"), &t);
	}
	if (write(rfd, &t, sizeof(t)) != sizeof(t))
		return 4;
	if (!strcmp(argv[1], "exit"))
		_exit(0);
	while (read(go, &c, 1) > 0)
		;
	if (s >= 0)
		close(s);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd))
		die(path);
}

int have_user_namespaces(void)
{
	return access("/proc/self/ns/user", F_OK) == 0;
}

/* Become @uid/@gid with @from's file bind-mounted over @exe in a mount
 * namespace of our own, as an unprivileged user can with a user namespace:
 * /proc/<pid>/exe and comm of what then runs as @exe read @exe. A kernel
 * without user namespaces (the debug kernel) gets the same view from a mount
 * namespace that root makes before dropping to @uid. */
static void fake_exe(const char *exe, const char *from, uid_t uid, gid_t gid)
{
	char map[64];

	if (have_user_namespaces()) {
		/* Dumpable again after setuid (as a user's own process is), or
		 * /proc/self stays root's and the maps cannot be written. */
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid) || prctl(PR_SET_DUMPABLE, 1))
			die("setuid");
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS))
			die("unshare(CLONE_NEWUSER | CLONE_NEWNS) as an unprivileged user");
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "%u %u 1", uid, uid);
		write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "%u %u 1", gid, gid);
		write_file("/proc/self/gid_map", map);
	} else if (unshare(CLONE_NEWNS)) {
		die("unshare(CLONE_NEWNS)");
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) || mount(from, exe, NULL, MS_BIND, NULL))
		die("bind mount over the executable");
	if (!have_user_namespaces() && (setgroups(0, NULL) || setgid(gid) || setuid(uid)))
		die("setuid");
}

/* Fork a client running @exe as @uid/@gid in cgroup @cg (NULL: stay); with
 * @fake_from, the file run as @exe is @fake_from's (fake_exe()). */
void spawn_client(struct child *ch, const char *exe, const char *mode, const char *ip, int port, uid_t uid,
		  gid_t gid, const char *cg, const int go[2], const char *fake_from)
{
	int p[2];

	if (pipe(p))
		die("pipe");
	ch->pid = fork();
	if (ch->pid < 0)
		die("fork");
	if (!ch->pid) {
		char a_port[16], a_rfd[16], a_go[16];

		close(p[0]);
		close(go[1]);	/* the client waits for EOF on go[0] */
		if (cg) {
			char path[256];
			FILE *f;

			snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/cgroup.procs", cg);
			f = fopen(path, "w");
			if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f))
				die("join cgroup");
		}
		if (fake_from)
			fake_exe(exe, fake_from, uid, gid);
		else if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			die("setuid");
		snprintf(a_port, sizeof(a_port), "%d", port);
		snprintf(a_rfd, sizeof(a_rfd), "%d", p[1]);
		snprintf(a_go, sizeof(a_go), "%d", go[0]);
		execl(exe, strrchr(exe, '/') + 1, mode, ip, a_port, a_rfd, a_go, (char *)NULL);
		die("exec");
	}
	close(p[1]);
	ch->rfd = p[0];
}

int read_tuple(struct child *ch)
{
	return read(ch->rfd, &ch->t, sizeof(ch->t)) == sizeof(ch->t) ? 0 : -1;
}

/* Start time of @pid in ns since boot, from /proc/<pid>/stat (clock ticks). */
long long proc_start_ns(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ticks;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	p = strrchr(buf, ')');
	for (i = 0; p && i < 20; i++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &ticks) != 1)
		return -1;
	return ticks * (1000000000LL / sysconf(_SC_CLK_TCK));
}

static unsigned long long ino_of(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : st.st_ino;
}

/* Check the identity of a flow against what its client should be. */
void check_identity(const char *name, const struct idgate_lookup *l, pid_t pid, uid_t uid,
			   gid_t gid, const char *exe, const char *cg)
{
	const char *comm = strrchr(exe, '/') + 1;
	char cgpath[300];

	CHECK(l->tgid == (uint32_t)pid, "%s: tgid %u == client pid %d", name, l->tgid, pid);
	CHECK(l->pid == (uint32_t)pid, "%s: pid %u == client pid %d", name, l->pid, pid);
	CHECK(l->uid == uid && l->gid == gid, "%s: uid/gid %u/%u == %u/%u", name, l->uid, l->gid, uid, gid);
	CHECK(!strcmp((const char *)l->exe, exe), "%s: exe '%s' == '%s'", name, l->exe, exe);
	CHECK(!strncmp((const char *)l->comm, comm, 15), "%s: comm '%s' == '%.15s'", name, l->comm, comm);
	if (cg) {
		snprintf(cgpath, sizeof(cgpath), "/sys/fs/cgroup/%s", cg);
		CHECK(!strcmp((const char *)l->cgroup, cgpath + strlen("/sys/fs/cgroup")),
		      "%s: cgroup '%s' == '%s'", name, l->cgroup, cgpath + 14);
		CHECK(l->cgroup_id == ino_of(cgpath), "%s: cgroup_id %llu == inode of %s (%llu)", name,
		      (unsigned long long)l->cgroup_id, cgpath, ino_of(cgpath));
	}
	CHECK(l->record_time_ns >= l->start_time_ns && l->start_time_ns > 0,
	      "%s: start_time_ns %llu <= record_time_ns %llu", name,
	      (unsigned long long)l->start_time_ns, (unsigned long long)l->record_time_ns);
}

/* "spawn EXE UID CGROUP IP PORT SECS [FAKE_FROM]": run EXE (an idg-client-*)
 * as UID in CGROUP, connecting from a named thread to IP:PORT, and hold the
 * connection SECS seconds: a workload for the proxy tests. With FAKE_FROM,
 * FAKE_FROM's file runs as EXE in a namespace of its own (fake_exe()). */
int spawn_main(int argc, char **argv)
{
	struct child ch;
	int go[2], status;

	if (argc != 8 && argc != 9)
		return 2;
	char cg[256];

	snprintf(cg, sizeof(cg), "/sys/fs/cgroup/%s", argv[4]);
	mkdir(cg, 0755);
	if (pipe(go))
		die("pipe");
	spawn_client(&ch, argv[2], "thread", argv[5], atoi(argv[6]), atoi(argv[3]), atoi(argv[3]), argv[4], go,
		     argc == 9 ? argv[8] : NULL);
	close(go[0]);
	if (write(go[1], "x", 1) != 1 || read_tuple(&ch))
		die("spawn: client");
	printf("spawn: pid %d connected: %s\n", ch.pid, ch.t.err ? strerror(ch.t.err) : "ok");
	sleep(atoi(argv[7]));
	close(go[1]);
	waitpid(ch.pid, &status, 0);
	return ch.t.err ? 1 : 0;
}
