// SPDX-License-Identifier: GPL-2.0
/* Lookup cost, kmod vs the procfs walk of a userspace fallback. */
#include "lib.h"

/* procfs attribution, as a userspace fallback must do it: find the socket
 * inode of the IPv4 flow in /proc/net/tcp, then the process holding it by
 * scanning /proc/<pid>/fd, then its uid and exe. Returns the tgid or -1. */
static int procfs_lookup(const struct tuple *t, uid_t *uid, char *exe, size_t exelen)
{
	const struct sockaddr_in *src = (const void *)&t->src, *dst = (const void *)&t->dst;
	char line[512], want[64], path[600], link[64];
	unsigned long inode = 0;
	struct dirent *de;
	int found = -1;
	FILE *f;
	DIR *d;

	snprintf(want, sizeof(want), "%08X:%04X %08X:%04X", src->sin_addr.s_addr, ntohs(src->sin_port),
		 dst->sin_addr.s_addr, ntohs(dst->sin_port));
	f = fopen("/proc/net/tcp", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':');

		if (p && !strncmp(p + 2, want, strlen(want))) {
			if (sscanf(p + 2 + strlen(want), "%*s %*s %*s %*s %*s %*s %lu", &inode) != 1)
				inode = 0;
			break;
		}
	}
	fclose(f);
	if (!inode)
		return -1;
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	d = opendir("/proc");
	while (d && found < 0 && (de = readdir(d))) {
		struct dirent *fe;
		DIR *fd;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", de->d_name);
		fd = opendir(path);
		while (fd && (fe = readdir(fd))) {
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/%s/fd/%s", de->d_name, fe->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			if (n > 0 && (link[n] = 0, !strcmp(link, want))) {
				found = atoi(de->d_name);
				break;
			}
		}
		if (fd)
			closedir(fd);
	}
	if (d)
		closedir(d);
	if (found < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/status", found);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %*u %u", uid) == 1)
			break;
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/exe", found);
	ssize_t n = readlink(path, exe, exelen - 1);

	exe[n > 0 ? n : 0] = 0;
	return found;
}

/* Lookup cost, kmod vs procfs, for @n open IPv4 flows of this process. */
int test_bench(int n)
{
	struct tuple *t = calloc(n, sizeof(*t));
	int *socks = calloc(n, sizeof(int)), *tgid = calloc(n, sizeof(int)), fd = dev_open(), i, agree = 0;
	struct idgate_lookup l;
	double t0, kmod_us, consume_us, procfs_us;
	char exe[256];
	uid_t uid;

	set_config(fd, 0, 2);
	for (i = 0; i < n; i++)
		socks[i] = connect_to(SRV4, PORT_IN, 0, &t[i]);
	t0 = now_s();
	for (i = 0; i < n; i++)
		do_lookup(fd, &t[i], 1, &l);
	kmod_us = (now_s() - t0) * 1e6 / n;
	t0 = now_s();
	for (i = 0; i < n; i++)
		tgid[i] = do_lookup(fd, &t[i], 0, &l) ? -1 : (int)l.tgid;
	consume_us = (now_s() - t0) * 1e6 / n;
	t0 = now_s();
	for (i = 0; i < n; i++)
		if (procfs_lookup(&t[i], &uid, exe, sizeof(exe)) == tgid[i] && tgid[i] == getpid() && uid == getuid())
			agree++;
	procfs_us = (now_s() - t0) * 1e6 / n;
	printf("bench: %d open flows: kmod peek %.1f us, kmod lookup (consume) %.1f us, procfs %.1f us per flow\n",
	       n, kmod_us, consume_us, procfs_us);
	CHECK(agree == n, "bench: kmod and procfs agree on all %d flows (kmod %.1f us vs procfs %.1f us per lookup)",
	      n, consume_us, procfs_us);
	for (i = 0; i < n; i++)
		if (socks[i] >= 0)
			close(socks[i]);
	free(t);
	free(socks);
	free(tgid);
	close(fd);
	return 0;
}
