// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* traffic-counter socket filter (BPF_PROG_TYPE_SOCKET_FILTER), attached to every AF_PACKET
 * worker socket.
 *
 * Passes IPv4/IPv6 frames (also behind up to TC_MAX_VLAN_TAGS 802.1Q/802.1ad/QinQ tags and in
 * PPPoE sessions) and MPLS frames (parsed in userspace), trimmed to tc_config.snaplen bytes; drops
 * and counts as non-IP everything else, by the same rules as userspace (native/core/src/parse.rs,
 * MANIFEST rules 2 and 3), so a frame is counted non-IP once, here or there. Drops frames whose
 * source or destination is in the tc_ignore_* tries and, when accept_enabled, frames whose source
 * is not in the tc_accept_* tries. The return value of a socket filter is the number
 * of bytes to keep (0 = drop): see sk_filter_trim_cap() in net/core/filter.c and run_filter() in
 * net/packet/af_packet.c. For SOCK_RAW packet sockets skb->data points at the MAC header. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tc_filter.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct tc_config);
	__uint(max_entries, 1);
} tc_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, TC_CNT_SLOTS);
} tc_counters SEC(".maps");

#define LPM_MAP(name, keytype)                                  \
	struct {                                                \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);            \
		__type(key, struct keytype);                    \
		__type(value, __u8);                            \
		__uint(max_entries, TC_MAX_CIDRS);              \
		__uint(map_flags, BPF_F_NO_PREALLOC);           \
	} name SEC(".maps")

LPM_MAP(tc_ignore_v4, tc_lpm_v4);
LPM_MAP(tc_ignore_v6, tc_lpm_v6);
LPM_MAP(tc_accept_v4, tc_lpm_v4);
LPM_MAP(tc_accept_v6, tc_lpm_v6);

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&tc_counters, &slot);
	if (v)
		*v += 1; /* per-CPU slot, softirq context: no atomic needed */
}

/* What the rules say of an IP frame. */
enum verdict {
	PASS,
	DROPPED, /* by a CIDR rule, counted as such */
	NON_IP,  /* an IP ethertype, but a header captured whole and unusable */
};

static __always_inline enum verdict rules_v4(const struct tc_config *cfg, const __u8 *s, const __u8 *d)
{
	struct tc_lpm_v4 src = { .prefixlen = 32 }, dst = { .prefixlen = 32 };
	__builtin_memcpy(src.addr, s, 4);
	__builtin_memcpy(dst.addr, d, 4);
	if (cfg->ignore_enabled &&
	    (bpf_map_lookup_elem(&tc_ignore_v4, &src) || bpf_map_lookup_elem(&tc_ignore_v4, &dst))) {
		count(TC_CNT_IGNORED);
		return DROPPED;
	}
	if (cfg->accept_enabled && !bpf_map_lookup_elem(&tc_accept_v4, &src)) {
		count(TC_CNT_NOT_ACCEPTED);
		return DROPPED;
	}
	return PASS;
}

static __always_inline enum verdict verdict_v4(struct __sk_buff *skb, __u32 off, const struct tc_config *cfg)
{
	__u8 h[20];
	/* A fixed header cut short is passed: userspace counts it as ip_header_incomplete. */
	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
		return PASS;
	/* Captured whole but unusable, so not an IP packet (rule 3): a version other than 4, an IHL
	 * below 5, a Total Length other than 0 below the header's own length (0 is TSO, rule 4). */
	__u32 ihl = (h[0] & 15) * 4;
	__u32 total = ((__u32)h[2] << 8) | h[3];
	if ((h[0] >> 4) != 4 || ihl < 20 || (total != 0 && total < ihl))
		return NON_IP;
	return rules_v4(cfg, h + 12, h + 16);
}

static __always_inline enum verdict verdict_v6(struct __sk_buff *skb, __u32 off, const struct tc_config *cfg)
{
	struct tc_lpm_v6 src = { .prefixlen = 128 }, dst = { .prefixlen = 128 };
	__u8 v;
	if (bpf_skb_load_bytes(skb, off, &v, 1) < 0 || bpf_skb_load_bytes(skb, off + 8, src.addr, 16) < 0 ||
	    bpf_skb_load_bytes(skb, off + 24, dst.addr, 16) < 0)
		return PASS;
	if ((v >> 4) != 6)
		return NON_IP;
	if (cfg->ignore_enabled &&
	    (bpf_map_lookup_elem(&tc_ignore_v6, &src) || bpf_map_lookup_elem(&tc_ignore_v6, &dst))) {
		count(TC_CNT_IGNORED);
		return DROPPED;
	}
	if (cfg->accept_enabled && !bpf_map_lookup_elem(&tc_accept_v6, &src)) {
		count(TC_CNT_NOT_ACCEPTED);
		return DROPPED;
	}
	return PASS;
}

SEC("socket")
int tc_filter(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct tc_config *cfg = bpf_map_lookup_elem(&tc_config, &zero);
	if (!cfg)
		return 0;
	__u32 keep = cfg->snaplen;
	__u32 off = 0;
	__u16 proto = 0;
	enum verdict v;

	if (cfg->link == TC_LINK_RAW_IP) {
		__u8 b0;
		if (bpf_skb_load_bytes(skb, 0, &b0, 1) < 0)
			goto non_ip;
		proto = (b0 >> 4) == 4 ? ETH_P_IP : (b0 >> 4) == 6 ? ETH_P_IPV6 : 0;
	} else {
		if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0)
			goto non_ip;
		proto = bpf_ntohs(proto);
		off = 14;
#pragma unroll
		for (int i = 0; i < TC_MAX_VLAN_TAGS; i++) {
			if (proto != ETH_P_8021Q && proto != ETH_P_8021AD && proto != ETH_P_QINQ1 && proto != ETH_P_QINQ2)
				break;
			if (bpf_skb_load_bytes(skb, off + 2, &proto, 2) < 0)
				goto non_ip;
			proto = bpf_ntohs(proto);
			off += 4;
		}
		/* A PPPoE session header ends the tags (RFC 2516): the PPP protocol at its end says
		 * whether an IP header follows. */
		if (proto == ETH_P_PPP_SES) {
			__u16 ppp;
			if (bpf_skb_load_bytes(skb, off + TC_PPPOE_SES_HLEN - 2, &ppp, 2) < 0)
				goto non_ip;
			ppp = bpf_ntohs(ppp);
			off += TC_PPPOE_SES_HLEN;
			proto = ppp == TC_PPP_IP ? ETH_P_IP : ppp == TC_PPP_IPV6 ? ETH_P_IPV6 : 0;
		}
	}

	if (proto == ETH_P_IP)
		v = verdict_v4(skb, off, cfg);
	else if (proto == ETH_P_IPV6)
		v = verdict_v6(skb, off, cfg);
	else if (proto == ETH_P_MPLS_UC || proto == ETH_P_MPLS_MC)
		v = PASS; /* MPLS: labels and pseudowires are walked (and rules applied) in userspace */
	else
		goto non_ip;
	if (v == NON_IP)
		goto non_ip;
	if (v == DROPPED)
		return 0;
	count(TC_CNT_PASSED);
	return keep;

non_ip:
	count(TC_CNT_NON_IP);
	return 0;
}
