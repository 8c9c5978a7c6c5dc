-- Join the line. ARGV: room, position_id, size, priority, ip_hash, metadata_json, bind, restore_arrival
-- restore_arrival > 0 puts a person whose place was lost back at their original arrival.
local position_id = ARGV[2]
local size, priority = tonumber(ARGV[3]), tonumber(ARGV[4])
local ip, meta, bind = ARGV[5], ARGV[6], ARGV[7]
local restore_arrival = tonumber(ARGV[8])
local cfg, err = room_for_change()
if not cfg then
  return err
end
if cfg.status == 'maintenance' then
  return fail('room_maintenance')
end
local now = now_ms()
local existing = get_person(position_id)
if existing then
  return view(position_id, existing, cfg, now, false)
end
local max_queue = tonumber(cfg.max_queue_size)
if max_queue > 0 and redis.call('ZCARD', K_LINE) >= max_queue then
  return fail('queue_full')
end
local max_ip = tonumber(cfg.max_positions_per_ip)
if max_ip > 0 and ip ~= '' and tonumber(redis.call('HGET', K_IPS, ip) or '0') >= max_ip then
  return fail('too_many_positions')
end
if size > tonumber(cfg.max_active) then
  return fail('party_too_large')
end
local arrival = restore_arrival
if arrival <= 0 then
  arrival = math.max(tonumber(redis.call('HGET', K_STATS, 'arrival') or '0') + 1, now * 10)
end
local p = { state = 'waiting', arrival = arrival, size = size, priority = priority, ip = ip,
            joined = now, meta = meta, bind = bind }
join_line(position_id, p, now)
emit(cfg.inc, 'enqueued', position_id, { arrival = arrival, priority = priority, size = size, ip_hash = ip,
                                 metadata = meta, bind = bind, restored = restore_arrival > 0 }, now)
return view(position_id, p, cfg, now, true)
