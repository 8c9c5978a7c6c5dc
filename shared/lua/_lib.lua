-- Prelude of every room script (see shared/scripts.py). In front of it comes a header
-- generated from the Python definitions: the key locals K_CFG .. K_POW and K_LEASE[role]
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

local function load_cfg()
  local flat = redis.call('HGETALL', K_CFG)
  if #flat == 0 then
    return nil
  end
  local cfg = {}
  for i = 1, #flat, 2 do
    cfg[flat[i]] = flat[i + 1]
  end
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

local function get_person(position_id)
  local raw = redis.call('HGET', K_PEOPLE, position_id)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

local function put_person(position_id, p)
  redis.call('HSET', K_PEOPLE, position_id, cjson.encode(p))
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

-- The first place in line that has a record (an entry whose record is gone is dropped).
local function line_head()
  while true do
    local head = redis.call('ZRANGE', K_LINE, 0, 0)
    if #head == 0 then
      return nil, nil
    end
    local p = get_person(head[1])
    if p then
      return head[1], p
    end
    redis.call('ZREM', K_LINE, head[1])
    redis.call('ZREM', K_SEEN, head[1])
  end
end

-- The transitions, shared by the scripts that make them and by replay.lua.
local function join_line(position_id, p, seen_at)
  put_person(position_id, p)
  redis.call('ZREM', K_ENDED, position_id) -- live again: the purge must not forget it
  redis.call('ZADD', K_LINE, line_score(p.priority, p.arrival), position_id)
  redis.call('ZADD', K_SEEN, seen_at, position_id)
  if p.ip ~= '' then
    redis.call('HINCRBY', K_IPS, p.ip, 1)
  end
  if tonumber(redis.call('HGET', K_STATS, 'arrival') or '0') < p.arrival then
    redis.call('HSET', K_STATS, 'arrival', p.arrival)
  end
  redis.call('HINCRBY', K_STATS, 'enqueued_total', 1)
end

local function mark_admitted(position_id, p, now, claim_deadline)
  redis.call('ZREM', K_LINE, position_id)
  redis.call('ZREM', K_SEEN, position_id)
  p.state = 'admitted'
  p.admitted_at = now
  p.claim_deadline = claim_deadline
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

local function free_units(p)
  if p.state == 'admitted' or p.state == 'active' then
    redis.call('HINCRBY', K_STATS, 'used_units', -p.size)
  end
end

-- Move a person to a final state: out of every live set, units and IP slot given back.
local function finish(position_id, p, state, reason, now)
  free_units(p)
  redis.call('ZREM', K_LINE, position_id)
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
  local kept = redis.call('HMGET', K_STATS, 'event_seq', 'fence', 'gone')
  local marked = redis.call('HGET', K_STATS, 'recovering')
  redis.call('DEL', K_CFG, K_STATS, K_LINE, K_SEEN, K_PEOPLE, K_ADMITTED, K_ACTIVE, K_IPS,
             K_ENDED, K_LEASE.admission, K_LEASE.heartbeat, K_POW)
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

-- The answer the gateway turns into a status: the person plus where they stand.
local function view(position_id, p, cfg, now, created)
  local rank = -1
  if p.state == 'waiting' then
    rank = redis.call('ZRANK', K_LINE, position_id)
  end
  local st = redis.call('HMGET', K_STATS, 'rate', 'rate_ts', 'rate_since', 'event_seq')
  return cjson.encode({
    position_id = position_id,
    state = p.state,
    rank = rank,
    total = redis.call('ZCARD', K_LINE),
    arrival = p.arrival,
    size = p.size,
    priority = p.priority,
    joined = p.joined,
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
