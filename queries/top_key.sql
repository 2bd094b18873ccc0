-- top_key: traffic per key of an address (a label, an AS, a network: src/query/keys.ts), tx + rx,
-- largest first; the addresses without a key are one row with key NULL.
-- Takes: window_ip_sums(ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes), the window's sums per
--        address (as top_ip); address_keys(ip_id, key), the key of each address of the window
--        (an index into the keys TypeScript made, numbered in their order; NULL = none);
--        parameter $limit (NULL = every row).
-- Returns: key, tx_packets, tx_bytes, rx_packets, rx_bytes, packets, bytes; total_rows (the rows before the limit).
select k.key,
       sum(d.tx_packets)::hugeint as tx_packets,
       sum(d.tx_bytes)::hugeint as tx_bytes,
       sum(d.rx_packets)::hugeint as rx_packets,
       sum(d.rx_bytes)::hugeint as rx_bytes,
       (sum(d.tx_packets) + sum(d.rx_packets))::hugeint as packets,
       (sum(d.tx_bytes) + sum(d.rx_bytes))::hugeint as bytes,
       count(*) over () as total_rows
from window_ip_sums d
join address_keys k on k.ip_id = d.ip_id
group by k.key
-- a key whose rows were all subtracted (see plan.ts) sums to zero
having sum(d.tx_packets) + sum(d.rx_packets) > 0
order by bytes desc, packets desc, k.key nulls last
limit $limit;
