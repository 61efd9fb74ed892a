// SPDX-License-Identifier: GPL-2.0
/*
 * LOCAL_OUT hook, IPv4 and IPv6, ahead of NAT. The first SYN of a TCP
 * connection is sent from connect(), in the connecting task's context:
 * that is where the identity is recorded, on every connect() of a socket,
 * tagged or not (a socket keeps its mark and a bound port across
 * connect(AF_UNSPEC) and a failed connect(); recording only untagged ones
 * would let it connect again and be looked up as whoever recorded that
 * 4-tuple last). Retransmits are not recorded: they are sent from timers, or
 * from whichever task releases the socket's lock after a timer fired (a
 * TCP_INFO reader, say), and are the only SYNs sent with icsk_retransmits
 * non-zero (tcp_connect_init() zeroes it, the retransmit timer raises it
 * before it sends).
 */
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/skbuff.h>
#include <linux/tcp.h>
#include <net/inet_connection_sock.h>
#include <net/ip.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "config.h"
#include "flowtable.h"
#include "hook.h"
#include "netns.h"
#include "proxies.h"
#include "stats.h"

/* Ports of @skb's TCP header at @thoff if it is a SYN without ACK. */
static bool tcp_syn_ports(const struct sk_buff *skb, unsigned int thoff,
			  struct idgate_flow_key *key)
{
	struct tcphdr _th;
	const struct tcphdr *th = skb_header_pointer(skb, thoff, sizeof(_th), &_th);

	if (!th || !th->syn || th->ack)
		return false;
	key->sport = ntohs(th->source);
	key->dport = ntohs(th->dest);
	return true;
}

static bool flow_key_v4(const struct sk_buff *skb, struct idgate_flow_key *key)
{
	const struct iphdr *iph = ip_hdr(skb);

	if (iph->protocol != IPPROTO_TCP || ip_is_fragment(iph))
		return false;
	key->family = AF_INET;
	memcpy(key->saddr, &iph->saddr, 4);
	memcpy(key->daddr, &iph->daddr, 4);
	return tcp_syn_ports(skb, skb_network_offset(skb) + ip_hdrlen(skb), key);
}

static bool flow_key_v6(const struct sk_buff *skb, struct idgate_flow_key *key)
{
	const struct ipv6hdr *ip6h = ipv6_hdr(skb);

	/* TCP sockets send no extension headers on a SYN. */
	if (ip6h->nexthdr != IPPROTO_TCP)
		return false;
	key->family = AF_INET6;
	memcpy(key->saddr, &ip6h->saddr, 16);
	memcpy(key->daddr, &ip6h->daddr, 16);
	return tcp_syn_ports(skb, skb_network_offset(skb) + sizeof(*ip6h), key);
}

/*
 * The first SYN of a connect(), sent from the connecting user task?
 * (Kernel threads' connections are not the proxy's business.) The socket is
 * owned by that task here, so its retransmit count cannot change under us.
 */
static bool connect_syn(const struct sk_buff *skb, u8 pf, struct idgate_flow_key *key)
{
	const struct sock *sk = skb->sk;

	if (!in_task() || (current->flags & PF_KTHREAD))
		return false;
	if (!sk || !sk_fullsock(sk) || sk->sk_protocol != IPPROTO_TCP ||
	    sk->sk_state != TCP_SYN_SENT || inet_csk(sk)->icsk_retransmits)
		return false;
	memset(key, 0, sizeof(*key));
	return pf == NFPROTO_IPV4 ? flow_key_v4(skb, key) : flow_key_v6(skb, key);
}

static void set_mark(struct sk_buff *skb, u32 mark, u32 mask)
{
	struct sock *sk = skb->sk;

	WRITE_ONCE(sk->sk_mark, (READ_ONCE(sk->sk_mark) & ~mask) | mark);
	skb->mark = (skb->mark & ~mask) | mark;
}

/*
 * Record and mark the flow if its destination is intercepted. The whole of it
 * runs in one RCU read-side section: nf_hook() holds one around every hook
 * anyway, and recording does not sleep (atomic allocation, spinlock).
 */
static void intercept(struct idgate_net *in, struct sk_buff *skb, const struct idgate_flow_key *key)
{
	const struct idgate_cfg *cfg;
	struct idgate_flow *flow;

	rcu_read_lock();
	cfg = rcu_dereference(in->cfg);
	if (!cfg || !idgate_cfg_match(cfg, key))
		goto out_unlock;
	if (idgate_is_proxy(in)) {
		idgate_stat_inc(skipped_proxy);
		goto out_unlock;
	}
	flow = idgate_flow_new(key);
	if (flow)
		idgate_table_insert(&in->table, flow);
	else
		idgate_stat_inc(dropped);
	/*
	 * Marked even when not recorded: the proxy then refuses the unknown
	 * flow instead of it bypassing the proxy (fail closed).
	 */
	set_mark(skb, cfg->mark, cfg->mask);
out_unlock:
	rcu_read_unlock();
}

static unsigned int idgate_local_out(void *priv, struct sk_buff *skb,
				     const struct nf_hook_state *state)
{
	struct idgate_flow_key key;

	if (connect_syn(skb, state->pf, &key))
		intercept(idgate_pernet(state->net), skb, &key);
	return NF_ACCEPT;
}

static const struct nf_hook_ops idgate_hook_ops[] = {
	{
		.hook = idgate_local_out,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_LOCAL_OUT,
		.priority = NF_IP_PRI_NAT_DST - 10,
	},
	{
		.hook = idgate_local_out,
		.pf = NFPROTO_IPV6,
		.hooknum = NF_INET_LOCAL_OUT,
		.priority = NF_IP6_PRI_NAT_DST - 10,
	},
};

int idgate_hook_register(struct net *net)
{
	return nf_register_net_hooks(net, idgate_hook_ops, ARRAY_SIZE(idgate_hook_ops));
}

void idgate_hook_unregister(struct net *net)
{
	nf_unregister_net_hooks(net, idgate_hook_ops, ARRAY_SIZE(idgate_hook_ops));
}
