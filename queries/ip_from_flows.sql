-- ip_from_flows: per-address rows derived from flow rows (used when a protocol or port filter
-- applies, since per-IP rows carry no protocol). Creates table ip_deltas like the per-IP load.
-- Takes: flow_deltas(src_id, dst_id, proto, sport, dport, packets, bytes).
create table ip_deltas as
select ip_id, sum(tx_packets)::hugeint as tx_packets, sum(tx_bytes)::hugeint as tx_bytes,
       sum(rx_packets)::hugeint as rx_packets, sum(rx_bytes)::hugeint as rx_bytes
from (
  select src_id as ip_id, packets as tx_packets, bytes as tx_bytes, 0 as rx_packets, 0 as rx_bytes from flow_deltas
  union all
  select dst_id, 0, 0, packets, bytes from flow_deltas
)
group by ip_id;
