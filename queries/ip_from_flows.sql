-- ip_from_flows: per-address rows derived from flow rows (used when a protocol or port filter
-- applies, since per-IP rows carry no protocol). Creates window_ip_sums, the window's sums per
-- address, as the per-IP load does.
-- Takes: window_flow_sums(src_id, dst_id, proto, sport, dport, packets, bytes), the window's
--        sums per flow.
create table window_ip_sums as
select ip_id, sum(tx_packets)::hugeint as tx_packets, sum(tx_bytes)::hugeint as tx_bytes,
       sum(rx_packets)::hugeint as rx_packets, sum(rx_bytes)::hugeint as rx_bytes
from (
  select src_id as ip_id, packets as tx_packets, bytes as tx_bytes, 0 as rx_packets, 0 as rx_bytes from window_flow_sums
  union all
  select dst_id, 0, 0, packets, bytes from window_flow_sums
)
group by ip_id;
