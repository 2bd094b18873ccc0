-- top_ip: traffic per address, tx (as source) + rx (as destination), largest first.
-- Takes: window_ip_sums(ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes), the window's sums per
--        address (an address may have a row per part read), and addresses(id, text) for the
--        ids they name; parameter $limit (NULL = every row).
-- Returns: ip, tx_packets, tx_bytes, rx_packets, rx_bytes, packets, bytes; total_rows (the rows before the limit).
select a.text as ip,
       sum(d.tx_packets)::hugeint as tx_packets,
       sum(d.tx_bytes)::hugeint as tx_bytes,
       sum(d.rx_packets)::hugeint as rx_packets,
       sum(d.rx_bytes)::hugeint as rx_bytes,
       (sum(d.tx_packets) + sum(d.rx_packets))::hugeint as packets,
       (sum(d.tx_bytes) + sum(d.rx_bytes))::hugeint as bytes,
       count(*) over () as total_rows
from window_ip_sums d
join addresses a on a.id = d.ip_id
group by a.text
-- a key whose rows were all subtracted (see plan.ts) sums to zero
having sum(d.tx_packets) + sum(d.rx_packets) > 0
order by bytes desc, packets desc, ip
limit $limit;
