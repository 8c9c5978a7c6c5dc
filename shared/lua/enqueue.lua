-- Join the line. ARGV: room, position_id, size, priority, ip_hash, metadata_json, bind,
-- restore_arrival, incarnation, pow_id, pow_difficulty, pow_expires_ms, outbox_max, lane,
-- invite_id, seed (fresh randomness: the pre-queue's draw seed, if this join starts a
-- pre-queue)
-- outbox_max > 0 turns new people away (events_backlog) while the room's outbox holds more
-- undelivered events than that (NATS away for long): nothing is dropped, and people
-- already waiting, or put back from their token, carry on.
-- restore_arrival > 0 puts a person whose place was lost back at their original arrival:
-- only in the incarnation of the room their token names, and counted against the
-- address's places like any join. A room that asks for proof of work (pow_difficulty)
-- takes a challenge solved at least that hard, and spends its id here, once.
-- Room policies: before opens_at a join goes into the pre-queue, at its place in the
-- pre-queue's draw (placed into the line when it opens: open_line.lua); from closes_at on
-- nobody new joins. `lane` is a lane of
-- the room or 'any'. An invite (its id; the gateway checked its signature) gives its
-- priority and spends one of its uses. In a passthrough or reject room someone who finds
-- nobody waiting and room to spare is admitted at once; a reject room turns away whoever
-- does not.
local position_id = ARGV[2]
local size, priority = tonumber(ARGV[3]), tonumber(ARGV[4])
local ip, meta, bind = ARGV[5], ARGV[6], ARGV[7]
local restore_arrival = tonumber(ARGV[8])
local incarnation = ARGV[9]
local pow_id, pow_difficulty, pow_expires = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local outbox_max = tonumber(ARGV[13] or '0')
local lane, invite_id, new_seed = ARGV[14], ARGV[15], ARGV[16]
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
local restoring = restore_arrival > 0
if restoring and deleted_incarnation(incarnation) then
  return fail('wrong_room') -- a token of a room deleted since, and made again
end
if outbox_max > 0 and not restoring and redis.call('XLEN', K_OUTBOX) > outbox_max then
  return fail('events_backlog')
end
local opens_at, closes_at = tonumber(cfg.opens_at or '0'), tonumber(cfg.closes_at or '0')
if not restoring and closes_at > 0 and now >= closes_at then
  return fail('room_closed')
end
local max_queue = tonumber(cfg.max_queue_size)
local waiting = redis.call('ZCARD', K_LINE) + redis.call('ZCARD', K_PREQUEUE)
if max_queue > 0 and waiting >= max_queue then
  return fail('queue_full')
end
local max_ip = tonumber(cfg.max_positions_per_ip)
if max_ip > 0 and ip ~= '' and tonumber(redis.call('HGET', K_IPS, ip) or '0') >= max_ip then
  return fail('too_many_positions')
end
if size > tonumber(cfg.max_active) or size > tonumber(cfg.max_party_size or cfg.max_active) then
  return fail('party_too_large')
end
local lanes = room_lanes(cfg)
if next(lanes) == nil then
  if lane ~= '' and lane ~= 'any' then
    return fail('unknown_lane')
  end
  lane = ''
else
  if lane == '' then
    lane = 'any'
  end
  if lane ~= 'any' and lanes[lane] == nil then
    return fail('unknown_lane')
  end
  local largest = 0
  for name, units in pairs(lanes) do
    if lane == 'any' or lane == name then
      largest = math.max(largest, units)
    end
  end
  if size > largest then
    return fail('party_too_large', 'The party is larger than any lane it may take.')
  end
end
local invite = nil
if invite_id ~= '' and not restoring then
  invite = get_invite(invite_id)
  if not invite then
    return fail('invite_invalid')
  end
  if invite.revoked then
    return fail('invite_revoked')
  end
  if invite.expires_at > 0 and now >= invite.expires_at then
    return fail('invite_expired')
  end
  if invite.used >= invite.uses then
    return fail('invite_used_up')
  end
  priority = invite.priority
end
local pre = opens_at > 0 and now < opens_at
local method = cfg.queueing_method or 'fifo'
local seat = nil -- where a passthrough or reject room seats someone at once
if not pre and not restoring and (method == 'passthrough' or method == 'reject')
    and cfg.status == 'active' then
  if waiting == 0 then
    seat = seat_for(capacity(cfg, tonumber(redis.call('HGET', K_STATS, 'used_units') or '0')),
                    lane, size)
  end
  if seat == nil and method == 'reject' then
    return fail('room_full')
  end
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
  arrival = math.max(last_arrival() + 1, now * 10)
end
-- a place belongs to the incarnation it was made in: a restored place keeps its token's
-- (one this store lost track of, not one it saw deleted)
local inc = cfg.inc
if restoring and incarnation ~= '' then
  inc = incarnation
end
local p = { state = 'waiting', arrival = arrival, size = size, priority = priority, ip = ip,
            meta = meta, bind = bind, inc = inc }
if lane ~= '' then
  p.lane = lane
end
local draw, seeded = nil, nil
if pre then
  local seed = redis.call('HGET', K_STATS, 'draw_seed')
  if not seed then
    seed, seeded = new_seed, new_seed
  end
  draw = draw_score(seed, position_id, priority)
  local last = tonumber(redis.call('HGET', K_STATS, 'prequeue_last') or '0')
  redis.call('HSET', K_STATS, 'draw_seed', seed, 'prequeue_last', math.max(last, arrival))
end
join_line(position_id, p, now, draw)
if invite then
  use_invite(invite_id)
end
emit(cfg.inc, 'enqueued', position_id, { arrival = arrival, priority = priority, size = size,
                                         incarnation = inc, ip_hash = ip,
                                 metadata = meta, bind = bind, restored = restoring,
                                 lane = p.lane, invite = invite and invite_id or nil,
                                 prequeue = pre or nil, draw = draw, draw_seed = seeded }, now)
if seat then
  mark_admitted(position_id, p, now, now + tonumber(cfg.claim_window) * 1000, seat)
  emit(cfg.inc, 'admitted', position_id, { claim_deadline = p.claim_deadline, size = p.size,
                                           arrival = p.arrival, lane = p.seat, direct = true },
       now)
end
return view(position_id, p, cfg, now, true)
