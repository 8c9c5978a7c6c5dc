-- Join the line. ARGV: room, position_id, size, priority, ip_hash, metadata_json, bind,
-- restore_arrival, incarnation, pow_id, pow_difficulty, pow_expires_ms, outbox_max
-- outbox_max > 0 turns new people away (events_backlog) while the room's outbox holds more
-- undelivered events than that (NATS away for long): nothing is dropped, and people
-- already waiting, or put back from their token, carry on.
-- restore_arrival > 0 puts a person whose place was lost back at their original arrival:
-- only in the incarnation of the room their token names, and counted against the
-- address's places like any join. A room that asks for proof of work (pow_difficulty)
-- takes a challenge solved at least that hard, and spends its id here, once.
local position_id = ARGV[2]
local size, priority = tonumber(ARGV[3]), tonumber(ARGV[4])
local ip, meta, bind = ARGV[5], ARGV[6], ARGV[7]
local restore_arrival = tonumber(ARGV[8])
local incarnation = ARGV[9]
local pow_id, pow_difficulty, pow_expires = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local outbox_max = tonumber(ARGV[13] or '0')
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
if restore_arrival > 0 and deleted_incarnation(incarnation) then
  return fail('wrong_room') -- a token of a room deleted since, and made again
end
if outbox_max > 0 and restore_arrival <= 0 and redis.call('XLEN', K_OUTBOX) > outbox_max then
  return fail('events_backlog')
end
local max_queue = tonumber(cfg.max_queue_size)
if max_queue > 0 and redis.call('ZCARD', K_LINE) >= max_queue then
  return fail('queue_full')
end
local max_ip = tonumber(cfg.max_positions_per_ip)
if max_ip > 0 and ip ~= '' and tonumber(redis.call('HGET', K_IPS, ip) or '0') >= max_ip then
  return fail('too_many_positions')
end
if size > tonumber(cfg.max_active) or size > tonumber(cfg.max_party_size or cfg.max_active) then
  return fail('party_too_large')
end
local required = tonumber(cfg.pow_difficulty or '0')
if required > 0 and restore_arrival <= 0 then
  if pow_id == '' then
    return fail('pow_required')
  end
  if pow_difficulty < required then
    return fail('pow_invalid')
  end
  redis.call('ZREMRANGEBYSCORE', K_POW, '-inf', now)
  if redis.call('ZADD', K_POW, 'NX', pow_expires, pow_id) == 0 then
    return fail('pow_reused')
  end
end
local arrival = restore_arrival
if arrival <= 0 then
  arrival = math.max(tonumber(redis.call('HGET', K_STATS, 'arrival') or '0') + 1, now * 10)
end
-- a place belongs to the incarnation it was made in: a restored place keeps its token's
-- (one this store lost track of, not one it saw deleted)
local inc = cfg.inc
if restore_arrival > 0 and incarnation ~= '' then
  inc = incarnation
end
local p = { state = 'waiting', arrival = arrival, size = size, priority = priority, ip = ip,
            joined = now, meta = meta, bind = bind, inc = inc }
join_line(position_id, p, now)
emit(cfg.inc, 'enqueued', position_id, { arrival = arrival, priority = priority, size = size,
                                         incarnation = inc, ip_hash = ip,
                                 metadata = meta, bind = bind, restored = restore_arrival > 0 }, now)
return view(position_id, p, cfg, now, true)
