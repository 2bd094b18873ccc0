// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* traffic-counter socket filter (BPF_PROG_TYPE_SOCKET_FILTER), attached to every AF_PACKET
 * worker socket.
 *
 * Passes IPv4/IPv6 frames (also behind up to TC_MAX_L2_STEPS 802.1Q/802.1ad/QinQ tags and
 * 802.2 LLC/SNAP headers, and in PPPoE sessions) and MPLS frames (parsed in userspace), trimmed to tc_config.snaplen bytes, except
 * that with tc_config.names DNS responses and ClientHellos pass whole (names_whole()); drops
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

/* Connections whose ClientHello continues past its first segment: the sequence number just past
 * its first TLS record. Set by the segment that starts the hello, removed by the one that reaches
 * that number; the LRU evicts connections that never do. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct tc_flow);
	__type(value, __u32);
	__uint(max_entries, TC_MAX_HELLO_FLOWS);
} tc_hello SEC(".maps");

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

/* `h` receives the fixed header (names_whole() reads it again from there); `loaded` says whether it could. */
static __always_inline enum verdict verdict_v4(struct __sk_buff *skb, __u32 off, const struct tc_config *cfg, __u8 *h, int *loaded)
{
	/* A fixed header cut short is passed: userspace counts it as ip_header_incomplete. */
	if (bpf_skb_load_bytes(skb, off, h, 20) < 0)
		return PASS;
	*loaded = 1;
	/* Captured whole but unusable, so not an IP packet (rule 3): a version other than 4, an IHL
	 * below 5, a Total Length other than 0 below the header's own length (0 is TSO, rule 4). */
	__u32 ihl = (h[0] & 15) * 4;
	__u32 total = ((__u32)h[2] << 8) | h[3];
	if ((h[0] >> 4) != 4 || ihl < 20 || (total != 0 && total < ihl))
		return NON_IP;
	return rules_v4(cfg, h + 12, h + 16);
}

/* As verdict_v4, with the 40-byte fixed header. */
static __always_inline enum verdict verdict_v6(struct __sk_buff *skb, __u32 off, const struct tc_config *cfg, __u8 *h, int *loaded)
{
	struct tc_lpm_v6 src = { .prefixlen = 128 }, dst = { .prefixlen = 128 };
	if (bpf_skb_load_bytes(skb, off, h, 40) < 0)
		return PASS;
	*loaded = 1;
	if ((h[0] >> 4) != 6)
		return NON_IP;
	__builtin_memcpy(src.addr, h + 8, 16);
	__builtin_memcpy(dst.addr, h + 24, 16);
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

/* Whether an IP frame (its header at `off`) carries what userspace reads names from, so that it
 * passes whole: a DNS response (UDP or TCP from port 53), a TCP segment whose payload starts a TLS
 * handshake record holding a ClientHello (type 22, version 3.x, handshake type 1), or a later
 * segment of a ClientHello that did not fit its first. Fragments are not read (userspace skips
 * them too). `h` is the fixed IP header the verdict loaded. The IPv4 options (IHL) and at most
 * TC_MAX_IPV6_EXT IPv6 extension headers are stepped over; only the bytes needed are loaded. */
static __always_inline int names_whole(struct __sk_buff *skb, __u32 off, __u16 proto, const __u8 *h)
{
	struct tc_flow key = {};
	__u32 l4, ip_end;
	__u8 l4proto;

	if (proto == ETH_P_IP) {
		if ((h[6] & 0x3f) | h[7]) /* MF or a fragment offset */
			return 0;
		__u32 total = ((__u32)h[2] << 8) | h[3];
		l4 = off + (h[0] & 15) * 4;
		ip_end = total ? off + total : skb->len; /* 0: a TSO frame */
		l4proto = h[9];
		key.fam = 4;
		__builtin_memcpy(key.src, h + 12, 4);
		__builtin_memcpy(key.dst, h + 16, 4);
	} else if (proto == ETH_P_IPV6) {
		__u32 plen = ((__u32)h[4] << 8) | h[5];
		l4 = off + 40;
		ip_end = plen ? l4 + plen : skb->len;
		l4proto = h[6];
#pragma unroll
		for (int i = 0; i < TC_MAX_IPV6_EXT; i++) {
			if (l4proto != 0 && l4proto != 43 && l4proto != 60)
				break;
			__u8 e[2];
			if (bpf_skb_load_bytes(skb, l4, e, sizeof(e)) < 0)
				return 0;
			l4proto = e[0];
			l4 += ((__u32)e[1] + 1) * 8;
		}
		key.fam = 6;
		__builtin_memcpy(key.src, h + 8, 16);
		__builtin_memcpy(key.dst, h + 24, 16);
	} else {
		return 0;
	}

	if (l4proto == 17) {
		__u8 u[2];
		if (bpf_skb_load_bytes(skb, l4, u, sizeof(u)) < 0)
			return 0;
		return (((__u16)u[0] << 8) | u[1]) == TC_DNS_PORT;
	}
	if (l4proto != 6)
		return 0;
	__u8 t[14];
	if (bpf_skb_load_bytes(skb, l4, t, sizeof(t)) < 0)
		return 0;
	key.sport = ((__u16)t[0] << 8) | t[1];
	key.dport = ((__u16)t[2] << 8) | t[3];
	if (key.sport == TC_DNS_PORT)
		return 1;
	__u32 data = l4 + (t[12] >> 4) * 4;
	if (data >= ip_end)
		return 0; /* no payload: a SYN, an ACK */
	__u32 len = ip_end - data;
	__u32 seq = ((__u32)t[4] << 24) | ((__u32)t[5] << 16) | ((__u32)t[6] << 8) | t[7];
	__u8 r[6];
	if (len >= sizeof(r) && bpf_skb_load_bytes(skb, data, r, sizeof(r)) == 0 && r[0] == 22 && r[1] == 3 && r[5] == 1) {
		__u32 record = ((__u32)r[3] << 8) | r[4];
		if (5 + record > len) {
			__u32 end = seq + 5 + record;
			bpf_map_update_elem(&tc_hello, &key, &end, BPF_ANY);
		}
		return 1;
	}
	__u32 *end = bpf_map_lookup_elem(&tc_hello, &key);
	if (!end)
		return 0;
	if ((__s32)(seq + len - *end) >= 0)
		bpf_map_delete_elem(&tc_hello, &key);
	return 1;
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
	__u8 ip[40];
	int loaded = 0;

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
		/* parse.rs ethertype(): VLAN tags and LLC/SNAP headers in any order. */
#pragma unroll
		for (int i = 0; i < TC_MAX_L2_STEPS; i++) {
			if (proto == ETH_P_8021Q || proto == ETH_P_8021AD || proto == ETH_P_QINQ1 || proto == ETH_P_QINQ2) {
				if (bpf_skb_load_bytes(skb, off + 2, &proto, 2) < 0)
					goto non_ip;
				proto = bpf_ntohs(proto);
				off += 4;
			} else if (proto <= 1500) {
				/* 802.3 length field: only LLC/SNAP with OUI 0 carries an ethertype. */
				__u8 llc[8];
				if (bpf_skb_load_bytes(skb, off, llc, sizeof(llc)) < 0)
					goto non_ip;
				if (llc[0] != 0xAA || llc[1] != 0xAA || llc[2] != 0x03 || llc[3] || llc[4] || llc[5])
					goto non_ip;
				proto = ((__u16)llc[6] << 8) | llc[7];
				off += 8;
			} else {
				break;
			}
		}
		/* Still behind a tag or LLC header: userspace walks on (to its own depth cap) and
		 * applies the rules, so the frame passes whole and unjudged. */
		if (proto == ETH_P_8021Q || proto == ETH_P_8021AD || proto == ETH_P_QINQ1 || proto == ETH_P_QINQ2 ||
		    proto <= 1500) {
			if (cfg->names_only)
				return 0;
			count(TC_CNT_PASSED);
			return skb->len;
		}
		/* A PPPoE session header ends the walk (RFC 2516): the PPP protocol at its end says
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
		v = verdict_v4(skb, off, cfg, ip, &loaded);
	else if (proto == ETH_P_IPV6)
		v = verdict_v6(skb, off, cfg, ip, &loaded);
	else if (proto == ETH_P_MPLS_UC || proto == ETH_P_MPLS_MC)
		v = PASS; /* MPLS: labels and pseudowires are walked (and rules applied) in userspace */
	else
		goto non_ip;
	if (v == NON_IP)
		goto non_ip;
	if (v == DROPPED)
		return 0;
	if (cfg->names_only)
		return cfg->names && loaded && names_whole(skb, off, proto, ip) ? skb->len : 0;
	count(TC_CNT_PASSED);
	/* Whole: tpacket_rcv() keeps min(this, skb->len) bytes, clamped to the ring's max_frame_len
	 * (block size less its header, net/packet/af_packet.c), so a TPACKET_V3 block of 1 MiB holds
	 * any frame. */
	if (cfg->names && loaded && names_whole(skb, off, proto, ip))
		return skb->len;
	return keep;

non_ip:
	count(TC_CNT_NON_IP);
	return 0;
}
