/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the test groups of idgate-test (see main.c). */
#ifndef IDGATE_TEST_LIB_H
#define IDGATE_TEST_LIB_H
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/prctl.h>

#include <linux/netfilter_ipv4.h>

#include "idgate.h"


#define DEV "/dev/" IDGATE_DEVICE_NAME
#define MARK 0x100
#define MARK_MASK 0xf00
#define PORT_IN 8080		/* in the intercept set */
#define PORT_OUT 9090		/* outside the intercept set */
#define SRV4 "10.77.0.2"
#define SRV6 "fd77::2"

extern int failures;

void pass(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define CHECK(cond, ...) do { if (cond) pass(__VA_ARGS__); else fail(__VA_ARGS__); } while (0)
void die(const char *what) __attribute__((noreturn));
int dev_open(void);

/* A flow as seen by the connecting socket. */
struct tuple {
	int family;
	struct sockaddr_storage src, dst;
	int err;		/* errno of connect(), 0 if it succeeded or is in progress */
	unsigned int mark;	/* SO_MARK of the socket after connect() */
};

int do_lookup(int fd, const struct tuple *t, int peek, struct idgate_lookup *l);
void make_addr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len);
/* connect() to ip:port; fills @t; returns the socket (or -1 if connect failed). */
int connect_to(const char *ip, int port, int nonblock, struct tuple *t);
void test_rules(struct idgate_rule r[2]);
/* IDGATE_IOC_CONFIG with the tests' mark; 0 or -errno. */
int configure(int fd, uint32_t proxy_tgid, const struct idgate_rule *rules, unsigned int n);
/* The first @nrules (0..2) of test_rules(), or die. */
void set_config(int fd, uint32_t proxy_tgid, int nrules);
struct idgate_stats get_stats(int fd);
double now_s(void);
unsigned long long read_sysfs_u64(const char *path);
void write_param(const char *name, unsigned int v);

/* Client half (client.c), run as idg-client-X through spawn_client(). */
struct child {
	pid_t pid;
	int rfd;		/* read end of its result pipe */
	struct tuple t;
};
int client_main(int argc, char **argv);
int spawn_main(int argc, char **argv);
void spawn_client(struct child *ch, const char *exe, const char *mode, const char *ip, int port, uid_t uid,
		  gid_t gid, const char *cg, const int go[2], const char *fake_from);
int have_user_namespaces(void);
int read_tuple(struct child *ch);
void check_identity(const char *name, const struct idgate_lookup *l, pid_t pid, uid_t uid,
		    gid_t gid, const char *exe, const char *cg);
long long proc_start_ns(pid_t pid);

/* The test groups, one file each. */
int test_version(void);
int test_config(void);
int test_skip(void);
int test_markbits(void);
int test_attrib(void);
int test_exited(void);
int test_thread(void);
int test_flood(int procs, int per_proc, int timeout_ms);
int test_evict(void);
int test_hold(int secs);
int test_churn(int secs);
int test_leave(int n);
int test_redirect(int proxy_port);
int test_bench(int n);
int test_storm(int secs, int procs);
int test_replay(void);
int test_handover(void);
int test_exeid(void);
int test_ruleset(unsigned int n, unsigned int nprobes);
/* @n rules (n >= 4): test_rules() first, then random ones (ruleset.c). */
struct idgate_rule *many_rules(unsigned int n, uint64_t seed);
int serve(int argc, char **argv);

#endif
