-- top_dst: addresses as receivers (rx), largest first.
-- Takes: window_ip_sums(ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes), the window's sums per
--        address (as top_ip); addresses(id, text); $limit.
-- Returns: ip, packets, bytes (what the address received); total_rows (the rows before the limit).
select a.text as ip, sum(d.rx_packets)::hugeint as packets, sum(d.rx_bytes)::hugeint as bytes,
       count(*) over () as total_rows
from window_ip_sums d join addresses a on a.id = d.ip_id
group by a.text
having sum(d.rx_packets) > 0
order by bytes desc, packets desc, ip
limit $limit;
