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

/* Most VLAN tags (802.1Q / 802.1ad / QinQ) walked before giving up. */
#define TC_MAX_VLAN_TAGS 4

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

struct tc_config {
	__u32 snaplen;
	__u32 link;
	__u32 ignore_enabled;
	__u32 accept_enabled;
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
