-- top_flow: traffic per unidirectional 5-tuple, largest first.
-- Takes: window_flow_sums(src_id, dst_id, proto, sport, dport, packets, bytes), the window's sums
--        per flow (a flow may have a row per part read), and addresses(id, text) for the ids
--        they name; parameter $limit (NULL = every row).
-- Returns: src, dst, proto, sport, dport, packets, bytes; total_rows (the rows before the limit).
select s.text as src, t.text as dst, d.proto, d.sport, d.dport,
       sum(d.packets)::hugeint as packets,
       sum(d.bytes)::hugeint as bytes,
       count(*) over () as total_rows
from window_flow_sums d
join addresses s on s.id = d.src_id
join addresses t on t.id = d.dst_id
group by s.text, t.text, d.proto, d.sport, d.dport
-- a key whose rows were all subtracted (see plan.ts) sums to zero
having sum(d.packets) > 0
order by bytes desc, packets desc, src, dst, proto, sport, dport
limit $limit;
