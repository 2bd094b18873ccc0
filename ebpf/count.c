// SPDX-License-Identifier: (MIT OR GPL-2.0)
/* traffic-counter kernel counting program (BPF_PROG_TYPE_SOCKET_FILTER).
 *
 * Parses each frame by the rules of shared/pcaps/MANIFEST.md exactly as native/core/src/parse.rs
 * does (the outermost IP header behind VLAN tags, PPPoE sessions, MPLS labels and Ethernet
 * pseudowires; the IPv6 extension chain walked for protocol and ports; fragments; bytes from the
 * IP length field; unusable headers non-IP), applies the ignore/accept CIDR tries, and counts
 * into the active buffer's maps: per flow with tc_kc_config.flows, else per address, and the
 * interval totals. It returns 0 for every frame it counted (or dropped by a rule), so the frame is never
 * copied to a ring. A frame it cannot count exactly (a header it cannot read whole, cut short;
 * a walk deeper than its bounds) it does not count and
 * returns tc_kc_config.keep (the snap length live, TC_KC_RETURN in a test run): the ring gets it
 * and userspace counts it by parse.rs, so each frame is counted once. With skip_outgoing
 * (loopback) a frame the host sends returns 0 uncounted: its received copy is counted.
 *
 * Offset 0 of every read is the first byte of the frame. Live (tc_kc_config.data_at_mac) the read
 * is bpf_skb_load_bytes: on a SOCK_RAW packet socket skb->data is the MAC header (packet_rcv and
 * tpacket_rcv push it back before the filter runs, net/packet/af_packet.c), and that helper also
 * reads paged data (skb_header_pointer), where a frame sent from a TX_RING (trafgen) or a driver
 * that leaves headers in page fragments keeps its IP header. In BPF_PROG_TEST_RUN
 * (net/bpf/test_run.c pulls the Ethernet header off the input but keeps the MAC header there,
 * the whole input linear) it is bpf_skb_load_bytes_relative(..., BPF_HDR_START_MAC), which reads
 * the linear part only.
 *
 * Two buffers (_a, _b) of every map: the program counts into the one tc_kc_config.active names,
 * read once per run. Userspace flips it at an interval boundary and then waits for an RCU grace
 * period (an ARRAY_OF_MAPS update: maybe_wait_bpf_programs() in kernel/bpf/syscall.c; socket
 * filters run inside an RCU read-side section), after which no run still writes the old buffer:
 * it is read and cleared whole (native/core/src/kcount.rs, which says why not map-in-maps). Counts are atomic adds into shared (not per-CPU) maps, so
 * map memory does not grow with the CPU count. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "tc_filter.h"
#include "tc_count.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

_Static_assert(TC_KC_COUNTS_ENTRIES == TC_KC_SLOTS + 2 * TC_KC_SKETCH_WORDS, "counts layout");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct tc_kc_config);
	__uint(max_entries, 1);
} tc_kc_config SEC(".maps");

/* max_entries of the hash maps is set by the loader from --max-keys. */
#define IP_MAP(name)                                            \
	struct {                                                \
		__uint(type, BPF_MAP_TYPE_HASH);                \
		__type(key, struct tc_kc_ip_key);               \
		__type(value, struct tc_kc_ip_val);             \
		__uint(max_entries, 1);                         \
	} name SEC(".maps")
#define FLOW_MAP(name)                                          \
	struct {                                                \
		__uint(type, BPF_MAP_TYPE_HASH);                \
		__type(key, struct tc_kc_flow_key);             \
		__type(value, struct tc_kc_flow_val);           \
		__uint(max_entries, 1);                         \
	} name SEC(".maps")
#define COUNTS_MAP(name)                                        \
	struct {                                                \
		__uint(type, BPF_MAP_TYPE_ARRAY);               \
		__type(key, __u32);                             \
		__type(value, __u64);                           \
		__uint(max_entries, TC_KC_COUNTS_ENTRIES);      \
	} name SEC(".maps")

IP_MAP(tc_kc_ips_a);
IP_MAP(tc_kc_ips_b);
FLOW_MAP(tc_kc_flows_a);
FLOW_MAP(tc_kc_flows_b);
COUNTS_MAP(tc_kc_counts_a);
COUNTS_MAP(tc_kc_counts_b);

/* The same names as filter.c's tries, so the loader fills either program's the same way. */
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

#define ETH_P_QINQ1_ 0x9100
#define ETH_P_QINQ2_ 0x9200

static __always_inline int load(struct __sk_buff *skb, const struct tc_kc_config *cfg, __u32 off, void *to, __u32 len)
{
	if (cfg->data_at_mac)
		return bpf_skb_load_bytes(skb, off, to, len);
	return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_MAC);
}

static __always_inline __u16 be16(const __u8 *p)
{
	return ((__u16)p[0] << 8) | p[1];
}

/* The outcome of the parse. */
enum kind {
	K_IP,
	K_NON_IP,
	K_IGNORED,
	K_RETURN,
};

struct pkt {
	__u8 src[16];
	__u8 dst[16];
	__u32 bytes;
	__u16 sport;
	__u16 dport;
	__u8 fam;
	__u8 proto;
	__u8 frag; /* 0 none, 1 first, 2 non-first */
};

static __always_inline int has_ports(__u8 proto)
{
	return proto == 6 || proto == 17 || proto == 132;
}

static __always_inline enum kind rules(const struct tc_kc_config *cfg, const struct pkt *p)
{
	if (p->fam == 4) {
		struct tc_lpm_v4 s = { .prefixlen = 32 }, d = { .prefixlen = 32 };
		__builtin_memcpy(s.addr, p->src, 4);
		__builtin_memcpy(d.addr, p->dst, 4);
		if (cfg->ignore_enabled && (bpf_map_lookup_elem(&tc_ignore_v4, &s) || bpf_map_lookup_elem(&tc_ignore_v4, &d)))
			return K_IGNORED;
		if (cfg->accept_enabled && !bpf_map_lookup_elem(&tc_accept_v4, &s))
			return K_IGNORED;
	} else {
		struct tc_lpm_v6 s = { .prefixlen = 128 }, d = { .prefixlen = 128 };
		__builtin_memcpy(s.addr, p->src, 16);
		__builtin_memcpy(d.addr, p->dst, 16);
		if (cfg->ignore_enabled && (bpf_map_lookup_elem(&tc_ignore_v6, &s) || bpf_map_lookup_elem(&tc_ignore_v6, &d)))
			return K_IGNORED;
		if (cfg->accept_enabled && !bpf_map_lookup_elem(&tc_accept_v6, &s))
			return K_IGNORED;
	}
	return K_IP;
}

/* parse.rs ip(4, ...). */
static __always_inline enum kind ipv4(struct __sk_buff *skb, __u32 off, const struct tc_kc_config *cfg, struct pkt *p)
{
	__u8 h[20];
	if (load(skb, cfg, off, h, sizeof(h)) < 0)
		return K_RETURN; /* cut short: ip_header_incomplete, counted in userspace */
	__u32 ihl = (h[0] & 15) * 4;
	__u32 total = be16(h + 2);
	if ((h[0] >> 4) != 4 || ihl < 20 || (total != 0 && total < ihl))
		return K_NON_IP;
	__builtin_memcpy(p->src, h + 12, 4);
	__builtin_memcpy(p->dst, h + 16, 4);
	p->fam = 4;
	enum kind k = rules(cfg, p);
	if (k != K_IP)
		return k;
	__u16 fl = be16(h + 6);
	__u16 fo = fl & 0x1fff;
	p->frag = fo ? 2 : (fl & 0x2000) ? 1 : 0;
	p->proto = h[9];
	p->bytes = total;
	if (has_ports(p->proto) && fo == 0) {
		__u8 ports[4];
		if (load(skb, cfg, off + ihl, ports, sizeof(ports)) < 0)
			return K_RETURN;
		p->sport = be16(ports);
		p->dport = be16(ports + 2);
	}
	return K_IP;
}

/* parse.rs ip(6, ...): the extension chain through Hop-by-Hop, Routing, Fragment and
 * Destination Options. */
static __always_inline enum kind ipv6(struct __sk_buff *skb, __u32 off, const struct tc_kc_config *cfg, struct pkt *p)
{
	__u8 h[40];
	if (load(skb, cfg, off, h, sizeof(h)) < 0)
		return K_RETURN;
	if ((h[0] >> 4) != 6)
		return K_NON_IP;
	__builtin_memcpy(p->src, h + 8, 16);
	__builtin_memcpy(p->dst, h + 24, 16);
	p->fam = 6;
	enum kind k = rules(cfg, p);
	if (k != K_IP)
		return k;
	p->bytes = (__u32)be16(h + 4) + 40;
	__u8 nxt = h[6];
	__u32 at = off + 40;
	int complete = 1;
	int i;
	for (i = 0; i < TC_KC_MAX_EXT; i++) {
		if (nxt != 0 && nxt != 43 && nxt != 44 && nxt != 60)
			break;
		if (nxt == 44) {
			/* The whole 8-byte Fragment header, as parse.rs requires it. */
			__u8 e[8];
			if (load(skb, cfg, at, e, sizeof(e)) < 0)
				return K_RETURN;
			__u16 fo = be16(e + 2);
			nxt = e[0];
			if (fo >> 3) {
				p->frag = 2;
				complete = 0;
				break;
			}
			if (fo & 1)
				p->frag = 1;
			at += 8;
		} else {
			__u8 e[2];
			if (load(skb, cfg, at, e, sizeof(e)) < 0)
				return K_RETURN;
			nxt = e[0];
			at += ((__u32)e[1] + 1) * 8;
		}
	}
	if (complete && i == TC_KC_MAX_EXT && (nxt == 0 || nxt == 43 || nxt == 44 || nxt == 60))
		return K_RETURN; /* deeper than this walk goes */
	p->proto = nxt;
	if (complete && has_ports(nxt)) {
		__u8 ports[4];
		if (load(skb, cfg, at, ports, sizeof(ports)) < 0)
			return K_RETURN;
		p->sport = be16(ports);
		p->dport = be16(ports + 2);
	}
	return K_IP;
}

/* parse.rs ethernet() and ethertype(): the walk to the outermost IP header, one header (a VLAN
 * tag, an LLC/SNAP header, an MPLS label, a pseudowire's control word and Ethernet header) a
 * step. parse.rs makes a frame non-IP past 32 steps; this walk returns it to userspace past
 * TC_KC_MAX_STEPS, so that limit is never reached here. Its own subprogram (BPF-to-BPF call):
 * the verifier then walks the steps once, not once per way of counting after them. */
static __noinline enum kind parse(struct __sk_buff *skb, const struct tc_kc_config *cfg, struct pkt *p)
{
	__u8 b[14];
	if (load(skb, cfg, 0, b, 14) < 0)
		return K_RETURN;
	__u16 et = be16(b + 12);
	__u32 off = 14;
	int label = 0; /* in an MPLS label stack */
	int l3 = 0;
	for (int i = 0; i < TC_KC_MAX_STEPS; i++) {
		if (label) {
			if (load(skb, cfg, off, b, 4) < 0)
				return K_RETURN;
			off += 4;
			if (!(b[2] & 1))
				continue;
			/* The bottom of the stack: what follows it. */
			if (load(skb, cfg, off, b, 1) < 0)
				return K_RETURN;
			__u8 nib = b[0] >> 4;
			if (nib == 4 || nib == 6) {
				l3 = nib;
				break;
			}
			if (nib != 0)
				return K_NON_IP;
			/* Ethernet pseudowire with a control word (RFC 4385): a whole Ethernet header
			 * after the 4-byte word, then the walk goes on. */
			if (load(skb, cfg, off + 4, b, 14) < 0)
				return K_RETURN;
			et = be16(b + 12);
			off += 4 + 14;
			label = 0;
			continue;
		}
		if (et == ETH_P_IP) {
			l3 = 4;
			break;
		}
		if (et == ETH_P_IPV6) {
			l3 = 6;
			break;
		}
		if (et == ETH_P_8021Q || et == ETH_P_8021AD || et == ETH_P_QINQ1_ || et == ETH_P_QINQ2_) {
			if (load(skb, cfg, off, b, 4) < 0)
				return K_RETURN;
			et = be16(b + 2);
			off += 4;
			continue;
		}
		if (et == ETH_P_PPP_SES) {
			if (load(skb, cfg, off, b, TC_PPPOE_SES_HLEN) < 0)
				return K_RETURN;
			__u16 ppp = be16(b + TC_PPPOE_SES_HLEN - 2);
			off += TC_PPPOE_SES_HLEN;
			if (ppp == TC_PPP_IP)
				l3 = 4;
			else if (ppp == TC_PPP_IPV6)
				l3 = 6;
			else
				return K_NON_IP;
			break;
		}
		if (et == ETH_P_MPLS_UC || et == ETH_P_MPLS_MC) {
			label = 1;
			continue;
		}
		if (et <= 1500) {
			/* 802.3 length field: only LLC/SNAP with OUI 0 carries an ethertype. */
			if (load(skb, cfg, off, b, 8) < 0)
				return K_RETURN;
			if (b[0] == 0xAA && b[1] == 0xAA && b[2] == 0x03 && b[3] == 0 && b[4] == 0 && b[5] == 0) {
				et = be16(b + 6);
				off += 8;
				continue;
			}
			return K_NON_IP;
		}
		return K_NON_IP;
	}
	if (l3 == 4)
		return ipv4(skb, off, cfg, p);
	if (l3 == 6)
		return ipv6(skb, off, cfg, p);
	return K_RETURN; /* deeper than TC_KC_MAX_STEPS */
}

static __always_inline void add(void *counts, __u32 slot, __u64 v)
{
	__u64 *c = bpf_map_lookup_elem(counts, &slot);
	if (c)
		__sync_fetch_and_add(c, v);
}

/* FNV-1a over the key's words: only for keys a full map refused (the sketch). */
static __always_inline __u64 hash_words(const __u32 *w, int n)
{
	__u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < n; i++) {
		h ^= w[i];
		h *= 0x100000001b3ULL;
	}
	return h ^ (h >> 29);
}

/* Sets the sketch bit of `h`. Not atomic (a fetch-or needs 5.12): two CPUs setting bits of one
 * word at once can lose one, which lowers the estimate by one key, never a count. */
static __always_inline void sketch(void *counts, __u32 base, __u64 h)
{
	__u32 slot = base + ((h >> 6) & (TC_KC_SKETCH_WORDS - 1));
	__u64 *w = bpf_map_lookup_elem(counts, &slot);
	if (w)
		*w |= 1ULL << (h & 63);
}

static __always_inline void add_ip(void *ips, void *counts, const __u8 *addr, __u8 fam, int tx, __u64 bytes)
{
	struct tc_kc_ip_key k = { .fam = fam };
	__builtin_memcpy(k.addr, addr, 16);
	struct tc_kc_ip_val *v = bpf_map_lookup_elem(ips, &k);
	if (!v) {
		/* A new key is inserted holding this frame; another CPU may insert it first (EEXIST)
		 * or the map be full (E2BIG): then look again. */
		struct tc_kc_ip_val first = {};
		if (tx) {
			first.tx_packets = 1;
			first.tx_bytes = bytes;
		} else {
			first.rx_packets = 1;
			first.rx_bytes = bytes;
		}
		if (bpf_map_update_elem(ips, &k, &first, BPF_NOEXIST) == 0)
			return;
		v = bpf_map_lookup_elem(ips, &k);
	}
	if (v) {
		if (tx) {
			__sync_fetch_and_add(&v->tx_packets, 1);
			__sync_fetch_and_add(&v->tx_bytes, bytes);
		} else {
			__sync_fetch_and_add(&v->rx_packets, 1);
			__sync_fetch_and_add(&v->rx_bytes, bytes);
		}
		return;
	}
	add(counts, tx ? TC_KC_IP_OVF_TX_PACKETS : TC_KC_IP_OVF_RX_PACKETS, 1);
	add(counts, tx ? TC_KC_IP_OVF_TX_BYTES : TC_KC_IP_OVF_RX_BYTES, bytes);
	sketch(counts, TC_KC_SLOTS, hash_words((const __u32 *)&k, sizeof(k) / 4));
}

/* Counts the frame in its flow's entry; false when the flow map is full (the frame is then in
 * the flow overflow row and its addresses are counted apart). */
static __always_inline int add_flow(void *flows, void *counts, const struct pkt *p)
{
	struct tc_kc_flow_key k = { .fam = p->fam, .proto = p->proto, .sport = p->sport, .dport = p->dport };
	__builtin_memcpy(k.src, p->src, 16);
	__builtin_memcpy(k.dst, p->dst, 16);
	struct tc_kc_flow_val *v = bpf_map_lookup_elem(flows, &k);
	if (!v) {
		struct tc_kc_flow_val first = { .packets = 1, .bytes = p->bytes };
		if (bpf_map_update_elem(flows, &k, &first, BPF_NOEXIST) == 0)
			return 1;
		v = bpf_map_lookup_elem(flows, &k);
	}
	if (v) {
		__sync_fetch_and_add(&v->packets, 1);
		__sync_fetch_and_add(&v->bytes, p->bytes);
		return 1;
	}
	add(counts, TC_KC_FLOW_OVF_PACKETS, 1);
	add(counts, TC_KC_FLOW_OVF_BYTES, p->bytes);
	sketch(counts, TC_KC_SLOTS + TC_KC_SKETCH_WORDS, hash_words((const __u32 *)&k, sizeof(k) / 4));
	return 0;
}

/* Counts the outcome into one buffer's maps (table.rs Tables::count, add_ip, add_flow). With
 * flows, a frame counted in its flow's entry is not counted per address: userspace adds each
 * flow entry to its source's tx and its destination's rx when it drains the buffer (kcount.rs
 * drain), which gives the same sums for one hash-map update a frame instead of three. The
 * address maps then hold the frames whose flow a full map refused. */
static __always_inline int count(enum kind k, const struct pkt *p, int flows, void *ips, void *flowmap, void *counts)
{
	switch (k) {
	case K_RETURN:
		add(counts, TC_KC_RETURNED, 1);
		return -1; /* the caller returns tc_kc_config.keep */
	case K_IGNORED:
		add(counts, TC_KC_IGNORED, 1);
		return 0;
	case K_NON_IP:
		add(counts, TC_KC_NON_IP, 1);
		return 0;
	case K_IP:
		break;
	}
	__u64 b = p->bytes;
	if (p->fam == 4) {
		add(counts, TC_KC_IPV4_PACKETS, 1);
		add(counts, TC_KC_IPV4_BYTES, b);
		if (b == 0)
			add(counts, TC_KC_IP_LENGTH_FIELD_ZERO, 1);
	} else {
		add(counts, TC_KC_IPV6_PACKETS, 1);
		add(counts, TC_KC_IPV6_BYTES, b);
		if (b == 40)
			add(counts, TC_KC_IP_LENGTH_FIELD_ZERO, 1);
	}
	if (p->frag == 1)
		add(counts, TC_KC_FRAGMENTS_FIRST, 1);
	else if (p->frag == 2)
		add(counts, TC_KC_FRAGMENTS_NON_FIRST, 1);
	if (flows && add_flow(flowmap, counts, p))
		return 0;
	add_ip(ips, counts, p->src, p->fam, 1, b);
	add_ip(ips, counts, p->dst, p->fam, 0, b);
	return 0;
}

SEC("socket")
int tc_count(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct tc_kc_config *cfg = bpf_map_lookup_elem(&tc_kc_config, &zero);
	if (!cfg)
		return TC_KC_RETURN;
	if (cfg->skip_outgoing && skb->pkt_type == PACKET_OUTGOING)
		return 0;
	struct pkt p = {};
	enum kind k = parse(skb, cfg, &p);
	/* Read once: the buffer this run counts into, whatever userspace flips meanwhile. */
	__u32 active = *(volatile __u32 *)&cfg->active;
	int flows = cfg->flows;
	int r;
	if (active)
		r = count(k, &p, flows, &tc_kc_ips_b, &tc_kc_flows_b, &tc_kc_counts_b);
	else
		r = count(k, &p, flows, &tc_kc_ips_a, &tc_kc_flows_a, &tc_kc_counts_a);
	return r < 0 ? cfg->keep : 0;
}
