// SPDX-License-Identifier: GPL-2.0
/*
 * idgate-test: tests of the idgate kernel module, run inside the VM (see
 * guest/init). Built statically against kmod/include/uapi/idgate.h from the
 * files of this directory, one per test group.
 *
 *   idgate-test <test> [args]    run one test, print "PASS: ..." or
 *                                "FAIL: ..." lines, exit 0 only if all pass
 *   idg-client-* <mode> ...      (argv[0]) client half of the tests: a copy
 *                                of this binary under another name, so that
 *                                flows come from a different executable
 *
 * Network layout (made by guest/init): netns "cli" (10.77.0.1, fd77::1)
 * and netns "srv" (10.77.0.2, fd77::2) joined by a veth pair; "srv" runs
 * `idgate-test serve` on ports 8080 (intercepted) and 9090 (not).
 */
#include "lib.h"

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strncmp(base, "idg-client-", 11))
		return client_main(argc, argv);
	if (argc < 2) {
		fprintf(stderr, "usage: idgate-test version|config|attrib|exited|thread|markbits|skip|replay|handover|exeid|ruleset N P|flood P N T|hold S|churn S|storm S P|redirect PORT|serve PORT...\n");
		return 2;
	}
	const char *t = argv[1];

	if (!strcmp(t, "serve"))
		return serve(argc - 2, argv + 2);
	if (!strcmp(t, "spawn"))
		return spawn_main(argc, argv);
	alarm(600);	/* a hung test fails instead of stalling the VM */
	if (!strcmp(t, "version"))
		test_version();
	else if (!strcmp(t, "config"))
		test_config();
	else if (!strcmp(t, "attrib"))
		test_attrib();
	else if (!strcmp(t, "markbits"))
		test_markbits();
	else if (!strcmp(t, "thread"))
		test_thread();
	else if (!strcmp(t, "exited"))
		test_exited();
	else if (!strcmp(t, "skip"))
		test_skip();
	else if (!strcmp(t, "replay"))
		test_replay();
	else if (!strcmp(t, "handover"))
		test_handover();
	else if (!strcmp(t, "exeid"))
		test_exeid();
	else if (!strcmp(t, "ruleset") && argc == 4)
		test_ruleset(atoi(argv[2]), atoi(argv[3]));
	else if (!strcmp(t, "flood") && argc == 5)
		test_flood(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	else if (!strcmp(t, "hold") && argc == 3)
		test_hold(atoi(argv[2]));
	else if (!strcmp(t, "storm") && argc == 4)
		test_storm(atoi(argv[2]), atoi(argv[3]));
	else if (!strcmp(t, "churn") && argc == 3)
		test_churn(atoi(argv[2]));
	else if (!strcmp(t, "evict"))
		test_evict();
	else if (!strcmp(t, "bench") && argc == 3)
		test_bench(atoi(argv[2]));
	else if (!strcmp(t, "leave") && argc == 3)
		test_leave(atoi(argv[2]));
	else if (!strcmp(t, "redirect") && argc == 3)
		test_redirect(atoi(argv[2]));
	else {
		fprintf(stderr, "unknown test %s\n", t);
		return 2;
	}
	return failures ? 1 : 0;
}
