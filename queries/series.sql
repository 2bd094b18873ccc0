-- series: traffic per step, one row per step of the window (empty steps too).
-- Takes: series_rows(t_ms, tx_packets, tx_bytes, rx_packets, rx_bytes) loaded for the window;
--        $from_ms, $to_ms (window), $step_ms, $per_address (true: also tx_/rx_ columns).
-- Returns: start_ms, end_ms, packets, bytes, tx_packets, tx_bytes, rx_packets, rx_bytes.
-- Without an address, packets/bytes are the total IP traffic: each packet once (its source).
with steps as (
  select s as start_ms from range(($from_ms::bigint // $step_ms::bigint) * $step_ms::bigint, $to_ms::bigint, $step_ms::bigint) t(s)
),
sums as (
  select (t_ms // $step_ms::bigint) * $step_ms::bigint as start_ms,
         sum(tx_packets) as tx_packets, sum(tx_bytes) as tx_bytes,
         sum(rx_packets) as rx_packets, sum(rx_bytes) as rx_bytes
  from series_rows group by 1
)
select s.start_ms, s.start_ms + $step_ms::bigint as end_ms,
       (case when $per_address then coalesce(x.tx_packets, 0) + coalesce(x.rx_packets, 0) else coalesce(x.tx_packets, 0) end)::hugeint as packets,
       (case when $per_address then coalesce(x.tx_bytes, 0) + coalesce(x.rx_bytes, 0) else coalesce(x.tx_bytes, 0) end)::hugeint as bytes,
       coalesce(x.tx_packets, 0)::hugeint as tx_packets, coalesce(x.tx_bytes, 0)::hugeint as tx_bytes,
       coalesce(x.rx_packets, 0)::hugeint as rx_packets, coalesce(x.rx_bytes, 0)::hugeint as rx_bytes
from steps s left join sums x using (start_ms)
order by s.start_ms;
