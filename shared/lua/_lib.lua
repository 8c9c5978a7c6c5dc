-- Prelude of every room script (see shared/scripts.py). In front of it comes a header
-- generated from the Python definitions: the key locals K_CFG .. K_PREQUEUE and K_LEASE[role]
-- (KEYS is always RoomKeys.all(), every key with the {room} tag), MAX_PRIORITY,
-- PRIORITY_SPAN, RATE_TAU_MS and SCHEMA_VERSION.
-- ARGV[1] is always the room id.
local ROOM = ARGV[1]

-- A domain error, 'WR <code>' or 'WR <code> <detail>'; shared/errors.py SCRIPT_ERRORS maps
-- every code to the error the caller sees (a detail becomes its message).
local function fail(code, detail)
  if detail then
    return redis.error_reply('WR ' .. code .. ' ' .. detail)
  end
  return redis.error_reply('WR ' .. code)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The room's incarnation, read from its config once per script call (a digest of a room of
-- a million people decodes a million records). A script that writes or deletes the config
-- calls forget_room_incarnation() after it.
local known_incarnation = nil

local function room_incarnation()
  if known_incarnation == nil then
    known_incarnation = redis.call('HGET', K_CFG, 'inc') or ''
  end
  return known_incarnation
end

local function forget_room_incarnation()
  known_incarnation = nil
end

-- The latest arrival in the room (the line's order is by arrival), read once per script
-- call: a replay joins hundreds of people in one. Only join_line raises it; wipe_room,
-- which deletes it, calls forget_last_arrival().
local known_arrival = nil

local function last_arrival()
  if known_arrival == nil then
    known_arrival = tonumber(redis.call('HGET', K_STATS, 'arrival') or '0')
  end
  return known_arrival
end

local function forget_last_arrival()
  known_arrival = nil
end

-- A join's two counters (the latest arrival, the joins' total), added up in memory while a
-- replay applies its events and written once per call (write_join_stats): they were two
-- of a replayed join's eight writes. nil: each join writes them at once. Only join_line
-- adds to them; last_arrival() already answers from memory; wipe_room writes them before
-- it deletes every counter, so the room's stats change in the order they always did.
local pending_joins = nil

local function defer_join_stats()
  pending_joins = { count = 0, arrival = nil }
end

local function write_join_stats()
  if not pending_joins then
    return
  end
  if pending_joins.arrival then
    redis.call('HSET', K_STATS, 'arrival', pending_joins.arrival)
  end
  if pending_joins.count > 0 then
    redis.call('HINCRBY', K_STATS, 'enqueued_total', pending_joins.count)
  end
  pending_joins.count, pending_joins.arrival = 0, nil
end

local function load_cfg()
  local flat = redis.call('HGETALL', K_CFG)
  if #flat == 0 then
    return nil
  end
  local cfg = {}
  for i = 1, #flat, 2 do
    cfg[flat[i]] = flat[i + 1]
  end
  known_incarnation = cfg.inc or ''
  return cfg
end

-- Whether the room is being rebuilt from the event stream (`waitroom recover`, or the relay
-- catching a store that came back older up with the stream): nothing else may change it.
local function recovering()
  return redis.call('HEXISTS', K_STATS, 'recovering') == 1
end

-- The room's config for a script that reads it (a room being rebuilt may have none yet),
-- or nil and the error to answer.
local function room_for_read()
  local cfg = load_cfg()
  if not cfg then
    if recovering() then
      return nil, fail('room_recovering')
    end
    return nil, fail('room_not_found')
  end
  return cfg, nil
end

-- The room's config for a script that changes state (not while it is rebuilt), or nil and
-- the error to answer.
local function room_for_change()
  local cfg, err = room_for_read()
  if not cfg then
    return nil, err
  end
  if recovering() then
    return nil, fail('room_recovering')
  end
  return cfg, nil
end

-- Higher priority first, then arrival (see shared/line.py).
local function line_score(priority, arrival)
  return (MAX_PRIORITY - priority) * PRIORITY_SPAN + arrival
end

-- A person's record is stored without the fields that hold their usual value, and without
-- `inc` when it is the room's incarnation (the room's people are wiped with the room, so a
-- record without one belongs to the room as it is): a million people waiting then take a
-- third less memory. decode_person puts them back, so every script sees every field.
-- (Records once kept `joined`, the millisecond of the join, whenever it was not the
-- millisecond of `arrival`: past ten joins a millisecond, and for places put back from
-- their tokens. Nothing read it; it is dropped when a record is written.)
local PERSON_DEFAULTS = { state = 'waiting', size = 1, priority = 0, ip = '', meta = '',
                          bind = '' }

local function decode_person(raw)
  local p = cjson.decode(raw)
  for name, value in pairs(PERSON_DEFAULTS) do
    if p[name] == nil then
      p[name] = value
    end
  end
  if p.inc == nil then
    p.inc = room_incarnation()
  end
  return p
end

local function get_person(position_id)
  local raw = redis.call('HGET', K_PEOPLE, position_id)
  if not raw then
    return nil
  end
  return decode_person(raw)
end

local function put_person(position_id, p)
  local kept = {}
  for name, value in pairs(p) do
    if PERSON_DEFAULTS[name] ~= value then
      kept[name] = value
    end
  end
  kept.joined = nil
  if kept.inc ~= nil and kept.inc == room_incarnation() then
    kept.inc = nil
  end
  redis.call('HSET', K_PEOPLE, position_id, cjson.encode(kept))
end

-- Append one event to the room's outbox; the relay publishes it to JetStream. Answers its seq.
local function emit(inc, etype, position_id, fields, now)
  local event_seq = redis.call('HINCRBY', K_STATS, 'event_seq', 1)
  fields.v = SCHEMA_VERSION
  fields.id = ROOM .. ':' .. inc .. ':' .. event_seq
  fields.type = etype
  fields.room = ROOM
  fields.seq = event_seq
  fields.ts = now / 1000
  if position_id then
    fields.position_id = position_id
  end
  redis.call('XADD', K_OUTBOX, '*', 'e', cjson.encode(fields))
  return event_seq
end

-- The record of a place in line; nil, with the entry dropped, when the record is gone.
local function line_person(position_id)
  local p = get_person(position_id)
  if not p then
    redis.call('ZREM', K_LINE, position_id)
    redis.call('ZREM', K_SEEN, position_id)
  end
  return p
end

-- A config as the cfg hash holds it: name, value, ... (a table, the lanes, as JSON).
local function config_flat(config)
  local flat = {}
  for name, value in pairs(config) do
    flat[#flat + 1] = name
    if type(value) == 'table' then
      flat[#flat + 1] = cjson.encode(value)
    else
      flat[#flat + 1] = tostring(value)
    end
  end
  return flat
end

-- The transitions, shared by the scripts that make them and by replay.lua.
-- Someone who joins before the line opens (`draw`: their place in the pre-queue's draw)
-- waits in the pre-queue, out of the line, until the opening places them.
-- A place that ended before (put back from its token) must leave the ended set first
-- (see replay.lua): the purge must not forget it.
local function join_line(position_id, p, seen_at, draw)
  put_person(position_id, p)
  if draw then
    redis.call('ZADD', K_PREQUEUE, draw, position_id)
  else
    redis.call('ZADD', K_LINE, line_score(p.priority, p.arrival), position_id)
  end
  redis.call('ZADD', K_SEEN, seen_at, position_id)
  if p.ip ~= '' then
    redis.call('HINCRBY', K_IPS, p.ip, 1)
  end
  if last_arrival() < p.arrival then
    known_arrival = p.arrival
    if pending_joins then
      pending_joins.arrival = p.arrival
    else
      redis.call('HSET', K_STATS, 'arrival', p.arrival)
    end
  end
  if pending_joins then
    pending_joins.count = pending_joins.count + 1
  else
    redis.call('HINCRBY', K_STATS, 'enqueued_total', 1)
  end
end

-- `seat`: the lane the party takes its units from ('' or nil in a room without lanes).
local function mark_admitted(position_id, p, now, claim_deadline, seat)
  redis.call('ZREM', K_LINE, position_id)
  redis.call('ZREM', K_SEEN, position_id)
  p.state = 'admitted'
  p.admitted_at = now
  p.claim_deadline = claim_deadline
  if seat and seat ~= '' then
    p.seat = seat
    redis.call('HINCRBY', K_STATS, 'lane_used:' .. seat, p.size)
  end
  put_person(position_id, p)
  redis.call('ZADD', K_ADMITTED, claim_deadline, position_id)
  redis.call('HINCRBY', K_STATS, 'used_units', p.size)
  redis.call('HINCRBY', K_STATS, 'admitted_total', 1)
end

-- A session's end: session_ttl after its last sign of life, but never past max_session
-- after it began, whatever the heartbeats say.
local function session_end(p, cfg, now)
  local began = p.activated_at or now
  local cap = began + tonumber(cfg.max_session or '3600') * 1000
  return math.min(now + tonumber(cfg.session_ttl) * 1000, cap)
end

-- A keep-alive moves a session's deadline only in steps of a tenth of session_ttl (at
-- least a second), each step an `extended` event: deadlines stay on the record, at most
-- ten events per session_ttl per visit. The new deadline, or nil when no step is due.
local function session_step(p, cfg, now)
  local wanted = session_end(p, cfg, now)
  local step = math.max(1000, tonumber(cfg.session_ttl) * 100)
  if wanted - (p.session_deadline or 0) >= step then
    return wanted
  end
  return nil
end

local function extend_session(position_id, p, session_deadline)
  p.session_deadline = session_deadline
  put_person(position_id, p)
  redis.call('ZADD', K_ACTIVE, session_deadline, position_id)
end

local function mark_active(position_id, p, now, session_deadline)
  redis.call('ZREM', K_ADMITTED, position_id)
  p.state = 'active'
  p.activated_at = now
  p.session_deadline = session_deadline
  put_person(position_id, p)
  redis.call('ZADD', K_ACTIVE, session_deadline, position_id)
end

local TOTAL_OF = { completed = 'completed_total', expired = 'expired_total', left = 'left_total' }

-- A replica may write for a room only while it holds the role's lease with this fence.
local function hold_lease(role, holder, fence, lease_ms)
  if redis.call('GET', K_LEASE[role]) ~= holder .. ':' .. fence then
    return false
  end
  redis.call('PEXPIRE', K_LEASE[role], lease_ms)
  return true
end

-- The room, for a change by the replica holding its `role` lease (ARGV 2-4: holder,
-- fence, lease_ms); nil and the error to answer when the room cannot change or the lease
-- is not (or no longer) this replica's.
local function room_for_holder(role)
  local cfg, err = room_for_change()
  if not cfg then
    return nil, err
  end
  if not hold_lease(role, ARGV[2], ARGV[3], tonumber(ARGV[4])) then
    return nil, fail('lease_lost')
  end
  return cfg
end

local function free_units(p)
  if p.state == 'admitted' or p.state == 'active' then
    redis.call('HINCRBY', K_STATS, 'used_units', -p.size)
    if p.seat then
      redis.call('HINCRBY', K_STATS, 'lane_used:' .. p.seat, -p.size)
    end
  end
end

-- People who gave up their place in line (left, or went silent): an exponentially
-- decaying count like the admission rate's, for the wait estimate (shared/line.py).
local function count_gone_from_line(now)
  local st = redis.call('HMGET', K_STATS, 'gone_rate', 'gone_rate_ts')
  local r, ts = tonumber(st[1] or '0'), tonumber(st[2] or now)
  r = r * math.exp(-math.max(0, now - ts) / RATE_TAU_MS) + 1000 / RATE_TAU_MS
  redis.call('HSET', K_STATS, 'gone_rate', string.format('%.6f', r), 'gone_rate_ts', now)
end

-- Move a person to a final state: out of every live set, units and IP slot given back.
local function finish(position_id, p, state, reason, now)
  if p.state == 'waiting' and state ~= 'completed' then
    count_gone_from_line(now)
  end
  free_units(p)
  redis.call('ZREM', K_LINE, position_id)
  redis.call('ZREM', K_PREQUEUE, position_id)
  redis.call('ZREM', K_SEEN, position_id)
  redis.call('ZREM', K_ADMITTED, position_id)
  redis.call('ZREM', K_ACTIVE, position_id)
  if p.ip ~= '' then
    local left = redis.call('HINCRBY', K_IPS, p.ip, -1)
    if left <= 0 then
      redis.call('HDEL', K_IPS, p.ip)
    end
  end
  p.state = state
  p.reason = reason
  p.ended_at = now
  put_person(position_id, p)
  redis.call('ZADD', K_ENDED, now, position_id)
  redis.call('HINCRBY', K_STATS, TOTAL_OF[state], 1)
end

-- Remove a room's state; the outbox stays (the relay still delivers it) and so do the
-- event counter and the lease fence, so seq and fences keep rising.
local function wipe_room(gone_inc)
  write_join_stats()
  local kept = redis.call('HMGET', K_STATS, 'event_seq', 'fence', 'gone')
  local marked = redis.call('HGET', K_STATS, 'recovering')
  forget_room_incarnation()
  forget_last_arrival()
  redis.call('DEL', K_CFG, K_STATS, K_LINE, K_SEEN, K_PEOPLE, K_ADMITTED, K_ACTIVE, K_IPS,
             K_ENDED, K_LEASE.admission, K_LEASE.heartbeat, K_POW, K_LATENCY, K_INVITES,
             K_PREQUEUE)
  if marked then
    redis.call('HSET', K_STATS, 'recovering', marked)
  end
  -- the incarnations deleted here, latest 20: tokens of those never bring a place back
  local gone = kept[3] or ''
  if gone_inc then
    gone = string.sub(gone_inc .. ',' .. gone, 1, 20 * 9)
  end
  redis.call('HSET', K_STATS, 'event_seq', kept[1] or '0', 'fence', kept[2] or '0', 'gone', gone)
end

-- Whether an incarnation of this room was deleted (as far as this store remembers).
local function deleted_incarnation(inc)
  local gone = redis.call('HGET', K_STATS, 'gone') or ''
  return inc ~= '' and string.find(',' .. gone, ',' .. inc .. ',', 1, true) ~= nil
end

-- The answer the gateway turns into a status: the person plus where they stand (someone
-- waiting who is not in the line is in the pre-queue).
local function view(position_id, p, cfg, now, created)
  local rank = -1
  local prequeue = false
  if p.state == 'waiting' then
    rank = redis.call('ZRANK', K_LINE, position_id)
    if not rank then
      rank, prequeue = -1, true
    end
  end
  local st = redis.call('HMGET', K_STATS, 'rate', 'rate_ts', 'rate_since', 'event_seq',
                        'gone_rate', 'gone_rate_ts', 'pace')
  return cjson.encode({
    position_id = position_id,
    state = p.state,
    rank = rank,
    total = redis.call('ZCARD', K_LINE),
    arrival = p.arrival,
    size = p.size,
    priority = p.priority,
    admitted_at = p.admitted_at or 0,
    claim_deadline = p.claim_deadline or 0,
    session_deadline = p.session_deadline or 0,
    reason = p.reason or '',
    bind = p.bind or '',
    room_status = cfg.status,
    release_rate = tonumber(cfg.release_rate),
    session_ttl = tonumber(cfg.session_ttl),
    heartbeat_interval = tonumber(cfg.heartbeat_interval),
    target_url = cfg.target_url,
    incarnation = p.inc or cfg.inc,
    rate = tonumber(st[1] or '0'),
    rate_ts = tonumber(st[2] or '0'),
    rate_since = tonumber(st[3] or '0'),
    event_seq = tonumber(st[4] or '0'),
    now = now,
    created = created,
    gone_rate = tonumber(st[5] or '0'),
    gone_rate_ts = tonumber(st[6] or '0'),
    pace = (cfg.auto_release == 'true' and tonumber(st[7] or cfg.release_rate)) or -1,
    admission_policy = cfg.admission_policy or 'strict',
    queueing_method = cfg.queueing_method or 'fifo',
    lane = p.lane or '',
    prequeue = prequeue,
    opens_at = tonumber(cfg.opens_at or '0'),
  })
end

-- Expire everyone whose deadline in `zkey` (a sorted set scored by ms) has passed.
local function expire_due(zkey, cutoff, reason, cfg, now, max_batch)
  local due = redis.call('ZRANGEBYSCORE', zkey, '-inf', cutoff, 'LIMIT', 0, max_batch)
  for _, position_id in ipairs(due) do
    local p = get_person(position_id)
    if p and (p.state == 'waiting' or p.state == 'admitted' or p.state == 'active') then
      local units = p.size
      local was = p.state
      finish(position_id, p, 'expired', reason, now)
      emit(cfg.inc, 'expired', position_id, { reason = reason, from_state = was, size = units }, now)
    else
      redis.call('ZREM', zkey, position_id)
    end
  end
  return #due
end

-- Room policies --------------------------------------------------------------------------
-- The same rules in Python, for `waitroom audit`, are in shared/policy.py.

-- The room's lanes (name -> units); empty for a room without lanes.
local function room_lanes(cfg)
  if cfg.lanes == nil or cfg.lanes == '' or cfg.lanes == '{}' then
    return {}
  end
  return cjson.decode(cfg.lanes)
end

-- What the room has free now: units in all (max_active - used) and per lane (its units
-- less the units seated in it). Lanes are visited in name order, so seating is the same
-- every time.
local function capacity(cfg, used)
  local lanes = room_lanes(cfg)
  local cap = { max = tonumber(cfg.max_active), total = tonumber(cfg.max_active) - used,
                lanes = lanes, names = {}, free = {} }
  for name in pairs(lanes) do
    cap.names[#cap.names + 1] = name
  end
  table.sort(cap.names)
  for _, name in ipairs(cap.names) do
    local seated = tonumber(redis.call('HGET', K_STATS, 'lane_used:' .. name) or '0')
    cap.free[name] = lanes[name] - seated
  end
  return cap
end

-- Where a party of `size` that joined `lane` (a name, 'any', or '' for any) would sit now:
-- of the lanes it may use, the one with the least room that still fits it ('' in a room
-- without lanes). Or nil and why not: 'never' (it cannot fit the room as configured now:
-- it holds nobody up), 'lane' (no lane it may use has room), 'total' (a lane has, the
-- room's total has not).
local function seat_for(cap, lane, size)
  if size > cap.max then
    return nil, 'never'
  end
  if #cap.names == 0 then
    if size > cap.total then
      return nil, 'total'
    end
    return '', nil
  end
  local best, possible = nil, false
  for _, name in ipairs(cap.names) do
    if lane == 'any' or lane == '' or lane == name then
      if cap.lanes[name] >= size then
        possible = true
      end
      if cap.free[name] >= size and (best == nil or cap.free[name] < cap.free[best]) then
        best = name
      end
    end
  end
  if best == nil then
    if possible then
      return nil, 'lane'
    end
    return nil, 'never'
  end
  if size > cap.total then
    return nil, 'total'
  end
  return best, nil
end

local function take_seat(cap, seat, size)
  cap.total = cap.total - size
  if seat ~= '' then
    cap.free[seat] = cap.free[seat] - size
  end
end

-- Whether seating someone in `seat` passes over `p`, who waits ahead of them and does not
-- fit (`short` says why): it does when they wanted the same units.
local function competes(cap, p, short, seat)
  local lane = p.lane or ''
  return short == 'total' or #cap.names == 0 or lane == 'any' or lane == '' or lane == seat
end

-- Whether the pre-queue is due to open: it holds people and opens_at has passed (or was
-- taken away).
local function prequeue_due(cfg, now)
  local opens_at = tonumber(cfg.opens_at or '0')
  return (opens_at == 0 or now >= opens_at) and redis.call('ZCARD', K_PREQUEUE) > 0
end

-- The pre-queue's draw: a seed made when its first person joins (recorded on the stream);
-- everyone's place in it is sha1(seed .. ':' .. position_id), the first 40 bits, within
-- their priority (higher first). The pre-queue is a sorted set by this, so the shuffle is
-- sorted as people join and the opening only walks it. shared/policy.py draw_score.
local DRAW_SPAN = 1099511627776 -- 2^40: a priority's band; scores stay within cjson's 14 digits
local function draw_score(seed, position_id, priority)
  local h = tonumber(string.sub(redis.sha1hex(seed .. ':' .. position_id), 1, 10), 16)
  return (MAX_PRIORITY - priority) * DRAW_SPAN + h
end

-- Place up to `batch` people from the head of the pre-queue's draw into the line, in the
-- arrival slots from stats.open_base on: the slots lie within the arrivals the pre-queue
-- held, so everyone in it stays behind who waited before it and ahead of who comes
-- later. Answers how many were placed and the sha1 of their ids joined by ','.
local function place_prequeue(batch)
  local popped = redis.call('ZPOPMIN', K_PREQUEUE, batch)
  local st = redis.call('HMGET', K_STATS, 'open_base', 'open_rank')
  local base, rank = tonumber(st[1]), tonumber(st[2] or '0')
  local placed = {}
  for i = 1, #popped, 2 do
    local priority = MAX_PRIORITY - math.floor(tonumber(popped[i + 1]) / DRAW_SPAN)
    redis.call('ZADD', K_LINE, line_score(priority, base + rank), popped[i])
    rank = rank + 1
    placed[#placed + 1] = popped[i]
  end
  redis.call('HSET', K_STATS, 'open_rank', rank)
  if redis.call('ZCARD', K_PREQUEUE) == 0 then
    redis.call('HDEL', K_STATS, 'draw_seed', 'open_base', 'open_rank', 'prequeue_last')
  end
  return #placed, redis.sha1hex(table.concat(placed, ','))
end

-- The start of an opening: the first slot is the last pre-queue arrival less the people in
-- it, plus one (their arrivals are distinct, so it is no earlier than the first of them).
local function start_opening()
  local st = redis.call('HMGET', K_STATS, 'prequeue_last', 'draw_seed')
  local count = redis.call('ZCARD', K_PREQUEUE)
  local base = tonumber(st[1] or '0') - count + 1
  redis.call('HSET', K_STATS, 'open_base', base, 'open_rank', 0)
  return st[2] or '', count, base
end

-- Invites: K_INVITES maps an invite id to {priority, uses, used, expires_at, revoked}.
local function new_invite(priority, uses, expires_at)
  return { priority = priority, uses = uses, used = 0, expires_at = expires_at, revoked = false }
end

local function get_invite(invite_id)
  local stored = redis.call('HGET', K_INVITES, invite_id)
  if not stored then
    return nil
  end
  return cjson.decode(stored)
end

local function put_invite(invite_id, invite)
  redis.call('HSET', K_INVITES, invite_id, cjson.encode(invite))
end

local function use_invite(invite_id)
  local invite = get_invite(invite_id)
  if invite then
    invite.used = invite.used + 1
    put_invite(invite_id, invite)
  end
end
