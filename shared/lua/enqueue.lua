-- Join the line. ARGV: room, pid, size, priority, ip_hash, metadata_json, bind, restore_seq
-- restore_seq > 0 puts a person whose place was lost back at their original arrival.
local pid = ARGV[2]
local size, priority = tonumber(ARGV[3]), tonumber(ARGV[4])
local ip, meta, bind = ARGV[5], ARGV[6], ARGV[7]
local restore_seq = tonumber(ARGV[8])
local cfg, err = room_for_change()
if not cfg then
  return fail(err)
end
if cfg.status == 'maintenance' then
  return fail('room_maintenance')
end
local now = now_ms()
local existing = get_person(pid)
if existing then
  return view(pid, existing, cfg, now, false)
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
local seq = restore_seq
if seq <= 0 then
  seq = math.max(tonumber(redis.call('HGET', K_STATS, 'arrival') or '0') + 1, now * 10)
end
local p = { state = 'waiting', seq = seq, size = size, priority = priority, ip = ip,
            joined = now, meta = meta, bind = bind }
join_line(pid, p, now)
emit(cfg.inc, 'enqueued', pid, { arrival = seq, priority = priority, size = size, ip_hash = ip,
                                 metadata = meta, bind = bind, restored = restore_seq > 0 }, now)
return view(pid, p, cfg, now, true)
