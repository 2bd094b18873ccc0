-- series: traffic per step, one row per step of the window (empty steps too).
-- Takes: window_time_sums(t_ms, tx_packets, tx_bytes, rx_packets, rx_bytes, in_bytes, out_bytes),
--        the window's sums per interval or rollup bucket start (t_ms) over the addresses asked
--        for (all without one), and with --side the bytes received (in_bytes) and sent
--        (out_bytes) by that side's addresses (rows of their own, 0 in the other columns);
--        steps(start_ms, end_ms), the window's steps in order (UTC multiples of the step, or a
--        zone's calendar, where a day may last 23 or 25 hours); $per_address (true: tx + rx).
-- Returns: start_ms, end_ms, packets, bytes, tx_packets, tx_bytes, rx_packets, rx_bytes, in_bytes, out_bytes.
-- Without an address, packets/bytes are the total IP traffic: each packet once (its source).
-- A row belongs to the step its time (interval or bucket start) lies in.
with sums as (
  select s.start_ms,
         sum(r.tx_packets) as tx_packets, sum(r.tx_bytes) as tx_bytes,
         sum(r.rx_packets) as rx_packets, sum(r.rx_bytes) as rx_bytes,
         sum(r.in_bytes) as in_bytes, sum(r.out_bytes) as out_bytes
  from window_time_sums r asof join steps s on r.t_ms >= s.start_ms
  where r.t_ms < s.end_ms
  group by 1
)
select s.start_ms, s.end_ms,
       (case when $per_address then coalesce(x.tx_packets, 0) + coalesce(x.rx_packets, 0) else coalesce(x.tx_packets, 0) end)::hugeint as packets,
       (case when $per_address then coalesce(x.tx_bytes, 0) + coalesce(x.rx_bytes, 0) else coalesce(x.tx_bytes, 0) end)::hugeint as bytes,
       coalesce(x.tx_packets, 0)::hugeint as tx_packets, coalesce(x.tx_bytes, 0)::hugeint as tx_bytes,
       coalesce(x.rx_packets, 0)::hugeint as rx_packets, coalesce(x.rx_bytes, 0)::hugeint as rx_bytes,
       coalesce(x.in_bytes, 0)::hugeint as in_bytes, coalesce(x.out_bytes, 0)::hugeint as out_bytes
from steps s left join sums x using (start_ms)
order by s.start_ms;
