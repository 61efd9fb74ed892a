// SPDX-License-Identifier: GPL-2.0
/* The server side: accept and close. */
#include "lib.h"

/* Accept and close connections on each port given, forever. */
int serve(int argc, char **argv)
{
	int i;

	signal(SIGCHLD, SIG_IGN);
	for (i = 0; i < argc; i++) {
		if (fork())
			continue;
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[i])) };
		int one = 1, zero = 0, ls = socket(AF_INET6, SOCK_STREAM, 0);

		setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(ls, (void *)&sin6, sizeof(sin6)) || listen(ls, 4096))
			die("serve: bind/listen");
		for (;;) {
			int c = accept(ls, NULL, NULL);

			if (c >= 0)
				close(c);
		}
	}
	return 0;
}
