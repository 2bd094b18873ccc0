/* Constants and layouts shared by the kernel counting program (count.c) and the Rust side
 * (native/core/build.rs turns every "#define TC_<NAME> <number>" line into a Rust const of
 * count_consts.rs; native/core/src/kcount.rs mirrors the structs). */
#ifndef TC_COUNT_H
#define TC_COUNT_H

/* Slots of the counters arrays tc_kc_counts_a/_b (one per buffer): the interval's totals as
 * native/core/src/table.rs Totals names them, the overflow rows, then the sketches. Totals that
 * are sums of others (frames, ip_packets, ip_bytes) are added up when the buffer is drained, so
 * a packet costs the program fewer atomic adds. */
#define TC_KC_IPV4_PACKETS 0
#define TC_KC_IPV4_BYTES 1
#define TC_KC_IPV6_PACKETS 2
#define TC_KC_IPV6_BYTES 3
#define TC_KC_NON_IP 4
#define TC_KC_FRAGMENTS_FIRST 5
#define TC_KC_FRAGMENTS_NON_FIRST 6
#define TC_KC_IP_LENGTH_FIELD_ZERO 7
#define TC_KC_IGNORED 8
/* Frames handed back to be counted in userspace (not counted here). */
#define TC_KC_RETURNED 9
/* The overflow rows: what a full map refused. */
#define TC_KC_IP_OVF_TX_PACKETS 10
#define TC_KC_IP_OVF_TX_BYTES 11
#define TC_KC_IP_OVF_RX_PACKETS 12
#define TC_KC_IP_OVF_RX_BYTES 13
#define TC_KC_FLOW_OVF_PACKETS 14
#define TC_KC_FLOW_OVF_BYTES 15
#define TC_KC_SLOTS 16
/* Linear-counting sketches of the keys a full map refused, as table.rs OverflowSketch: 2^16
 * bits each, in 64-bit words after the slots (addresses first, then flows). */
#define TC_KC_SKETCH_WORDS 1024
/* TC_KC_SLOTS + 2 * TC_KC_SKETCH_WORDS (checked in count.c) */
#define TC_KC_COUNTS_ENTRIES 2064

/* Return values: 0 counted here; otherwise tc_kc_config.keep: count it in userspace (a header
 * this program cannot read whole, a walk deeper than its bounds). TC_KC_RETURN is the value a
 * test run uses (any nonzero value would do). */
#define TC_KC_RETURN 0xFFFF

/* Bounds of the walks (bounded loops for the verifier): headers before the IP header (VLAN
 * tags, LLC/SNAP, MPLS labels, pseudowires; below parse.rs's 32) and IPv6 extension headers. A
 * frame deeper than these is returned, so counted exactly in userspace. */
#define TC_KC_MAX_STEPS 12
#define TC_KC_MAX_EXT 8

/* Preallocated entries of the hash maps of a buffer the program does not use (no --flows). */
#define TC_KC_UNUSED_ENTRIES 1

struct tc_kc_config {
	/* Which buffer (0: _a, 1: _b) counts now; flipped by userspace at interval boundaries. */
	__u32 active;
	__u32 flows;
	__u32 ignore_enabled;
	__u32 accept_enabled;
	/* What a frame handed back returns: the bytes the ring keeps of it (live capture: the
	 * snaplen) or TC_KC_RETURN (BPF_PROG_TEST_RUN). */
	__u32 keep;
	/* Frames the host sends (PACKET_OUTGOING) are neither counted nor passed: on loopback every
	 * frame is seen twice, sent and received, and one is counted, as in userspace. */
	__u32 skip_outgoing;
	/* Live: offset 0 of skb->data is the MAC header, read with bpf_skb_load_bytes (count.c). */
	__u32 data_at_mac;
};

/* An address: family 4 keeps its 4 bytes at the front and zeros after (parse.rs Addr). */
struct tc_kc_ip_key {
	__u8 addr[16];
	__u32 fam;
};

struct tc_kc_ip_val {
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 rx_bytes;
};

struct tc_kc_flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u8 fam;
	__u8 proto;
	__u16 sport;
	__u16 dport;
	__u16 pad;
};

struct tc_kc_flow_val {
	__u64 packets;
	__u64 bytes;
};

#endif
