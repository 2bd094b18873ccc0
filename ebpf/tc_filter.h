/* Constants shared by the eBPF socket filter (filter.c) and the Rust loader
 * (native/core/build.rs turns every "#define TC_<NAME> <number>" line into a Rust const). */
#ifndef TC_FILTER_H
#define TC_FILTER_H

/* Counter slots of the per-CPU array tc_counters. */
#define TC_CNT_PASSED 0
#define TC_CNT_NON_IP 1
#define TC_CNT_IGNORED 2
#define TC_CNT_NOT_ACCEPTED 3
#define TC_CNT_SLOTS 4

/* tc_config.link: how the frame starts at skb->data (the MAC header for SOCK_RAW sockets). */
#define TC_LINK_ETHERNET 0
#define TC_LINK_RAW_IP 1

/* Most link-layer headers (VLAN tags: 802.1Q / 802.1ad / QinQ; 802.2 LLC/SNAP headers) the socket
 * filter walks; a frame still behind one after that many passes whole, for userspace to walk. */
#define TC_MAX_L2_STEPS 8

/* PPPoE session stage (RFC 2516 section 5.4, ethertype 0x8864): the 6-byte PPPoE header and the
 * 2-byte PPP protocol after it, which names IPv4 (RFC 1332) or IPv6 (RFC 5072); every other PPP
 * protocol (LCP 0xc021, IPCP 0x8021, ...) is control traffic, not IP. */
#define TC_PPPOE_SES_HLEN 8
#define TC_PPP_IP 0x0021
#define TC_PPP_IPV6 0x0057

/* Most CIDRs per LPM-trie map. */
#define TC_MAX_CIDRS 65536

/* Bytes kept of each passed frame by default: link header, tags and IP/L4 headers. */
#define TC_DEFAULT_SNAPLEN 128

/* Names (tc_config.names): DNS responses come from this port. */
#define TC_DNS_PORT 53
/* IPv6 extension headers (Hop-by-Hop, Routing, Destination Options) walked to reach UDP/TCP. */
#define TC_MAX_IPV6_EXT 4
/* Connections whose ClientHello did not fit its first segment, remembered (LRU) until the
 * segment that ends its first record. */
#define TC_MAX_HELLO_FLOWS 4096

struct tc_config {
	__u32 snaplen;
	__u32 link;
	__u32 ignore_enabled;
	__u32 accept_enabled;
	/* Pass DNS responses and ClientHellos whole (the reader of names is on). */
	__u32 names;
	/* Pass only those, and nothing else (the names socket of kernel counting: the counting
	 * program counts every frame, this socket's ring feeds names only). */
	__u32 names_only;
};

/* A TCP connection, client to server (tc_hello's key). IPv4 keeps its 4 bytes at the front. */
struct tc_flow {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u32 fam;
};

struct tc_lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct tc_lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

#endif
