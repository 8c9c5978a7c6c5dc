-- Apply events to a room, in order, making the change each original script made.
-- ARGV: room, mode, event_json...
-- mode 'strict': events read back from the stream, not appended to the outbox again;
--   events at or below the room's event counter are skipped (a replay run twice changes
--   nothing the second time); a missing seq or an event naming a place the room does not
--   know stops the run there (the events before it are applied) and is answered as `stop`;
--   so does a pre-queue's opening that places others than the stream recorded (`diverged`).
-- mode 'accept_gap': the same, but a missing seq is noted in `gaps` and the replay goes
--   on; an event naming an unknown place is counted in `orphans` and skipped; a room made
--   anew (another incarnation) after a deletion the gap hid is wiped first, as it was.
-- mode 'reapply': events a store made on an older state than the stream's (a fork), put
--   on top of the state rebuilt from the stream: each one that still applies makes its
--   change again as a new event (a new seq, appended to the outbox); the rest are skipped.
-- Every event whose change does not fit the place's state (admitting someone not waiting)
-- is skipped and counted in `conflicts`. Liveness (last seen) starts afresh, by the
-- server's clock. Answers {applied, skipped, conflicts, orphans, gaps, stop}.
local mode = ARGV[2]
local now = now_ms()
local LIVE = { waiting = true, admitted = true, active = true }
local result = { applied = 0, skipped = 0, conflicts = 0, orphans = 0, gaps = {} }

local function incarnation_of(e)
  return e.incarnation or string.match(e.id, '^.+:(.-):%d+$')
end

local function apply_room_updated(e, at)
  local cfg = load_cfg()
  local flat = config_flat(e.config)
  if mode ~= 'reapply' then
    if cfg and cfg.inc ~= incarnation_of(e) then
      -- the room made anew after a deletion this replay did not see (a gap accepted): the
      -- old room goes as the deletion took it, or its people would pass for the new one's
      wipe_room(cfg.inc)
    end
    redis.call('HSET', K_CFG, 'version', e.version, 'inc', incarnation_of(e), unpack(flat))
    forget_room_incarnation()
    return true
  end
  local inc, version = incarnation_of(e), 1
  if cfg then
    inc, version = cfg.inc, tonumber(cfg.version or '0') + 1
  end
  redis.call('HSET', K_CFG, 'version', version, 'inc', inc, unpack(flat))
  local config = load_cfg()  -- (and the incarnation it reads is known from here)
  config.version, config.inc = nil, nil
  emit(inc, 'room_updated', nil,
       { config = config, created = cfg == nil, version = version, incarnation = inc }, at)
  return true
end

-- A place's change; false when it does not fit the place's state.
local function apply_to_place(e, t, p, at)
  local position_id = e.position_id
  local fields = nil
  if t == 'admitted' then
    if p.state ~= 'waiting' then
      return false
    end
    mark_admitted(position_id, p, at, e.claim_deadline, e.lane)
    local passed = nil
    for _, passed_id in ipairs(e.passed or {}) do
      local ahead = get_person(passed_id)
      if ahead then
        ahead.skips = (ahead.skips or 0) + 1
        put_person(passed_id, ahead)
        passed = passed or {}
        passed[#passed + 1] = passed_id
      end
    end
    fields = { claim_deadline = e.claim_deadline, size = p.size, arrival = p.arrival,
               lane = p.seat, passed = passed, direct = e.direct or nil }
  elseif t == 'activated' then
    if p.state ~= 'admitted' then
      return false
    end
    mark_active(position_id, p, at, e.session_deadline)
    fields = { session_deadline = e.session_deadline }
  elseif t == 'extended' then
    if p.state ~= 'active' then
      return false
    end
    extend_session(position_id, p, e.session_deadline)
    fields = { session_deadline = e.session_deadline }
  elseif t == 'completed' or t == 'left' or t == 'expired' then
    if not LIVE[p.state] then
      return false
    end
    local was = p.state
    finish(position_id, p, t, e.reason or t, at)
    fields = { from_state = was, size = p.size }
    if t == 'expired' then
      fields.reason = e.reason
    end
  else
    return nil
  end
  if mode == 'reapply' then
    emit(load_cfg().inc, t, position_id, fields, at)
  end
  return true
end

local function apply_enqueued(e, at)
  local existing = get_person(e.position_id)
  if existing and mode == 'reapply' then
    return false -- the stream has this place already
  end
  if existing then
    redis.call('ZREM', K_ENDED, e.position_id) -- live again: the purge must not forget it
  end
  if existing and LIVE[existing.state] then
    -- the place was lost with a store and put back from its token: as it was then
    free_units(existing)
    redis.call('ZREM', K_ADMITTED, e.position_id)
    redis.call('ZREM', K_ACTIVE, e.position_id)
    if existing.ip ~= '' then
      redis.call('HINCRBY', K_IPS, existing.ip, -1)
    end
  end
  local p = { state = 'waiting', arrival = e.arrival, size = e.size, priority = e.priority,
              ip = e.ip_hash or '', meta = e.metadata or '', bind = e.bind or '',
              inc = incarnation_of(e) }
  if e.lane and e.lane ~= '' then
    p.lane = e.lane
  end
  local draw, seeded = nil, nil
  if e.prequeue then
    local seed = redis.call('HGET', K_STATS, 'draw_seed')
    if not seed then
      seed = e.draw_seed
      if not seed or seed == '' then
        seed = redis.sha1hex(e.id) -- a fork's pre-queue, started again by this join
      end
      seeded = seed
    end
    draw = e.draw
    if mode == 'reapply' then
      draw = draw_score(seed, e.position_id, p.priority) -- drawn under the rebuilt seed
    end
    local last = tonumber(redis.call('HGET', K_STATS, 'prequeue_last') or '0')
    redis.call('HSET', K_STATS, 'draw_seed', seed, 'prequeue_last', math.max(last, e.arrival))
  end
  join_line(e.position_id, p, now, draw)
  if e.invite and e.invite ~= '' then
    use_invite(e.invite)
  end
  if mode == 'reapply' then
    emit(load_cfg().inc, 'enqueued', e.position_id,
         { arrival = p.arrival, priority = p.priority, size = p.size, incarnation = p.inc,
           ip_hash = p.ip, metadata = p.meta, bind = p.bind, restored = true, lane = p.lane,
           invite = e.invite, prequeue = draw and true or nil, draw = draw,
           draw_seed = seeded }, at)
  end
  return true
end

-- The pre-queue's opening, made again as recorded: it must place the same people in the
-- same order, or the replay stops (`diverged`). A fork's openings are not made again:
-- the rebuilt room's own admission ticks open its pre-queue anew.
local function apply_opening(e, t)
  if mode == 'reapply' then
    return false
  end
  if t == 'line_opened' then
    local _, count, base = start_opening()
    if count ~= e.count or base ~= e.base then
      return nil, { kind = 'diverged', id = e.id, seq = e.seq }
    end
  else
    local placed, order = place_prequeue(e.placed)
    if placed ~= e.placed or order ~= e.order then
      return nil, { kind = 'diverged', id = e.id, seq = e.seq }
    end
  end
  return true
end

local function apply_invite(e, t, at)
  if t == 'invite_created' then
    put_invite(e.invite_id, new_invite(e.priority, e.uses, e.expires_at or 0))
  else
    local invite = get_invite(e.invite_id)
    if not invite then
      return false
    end
    invite.revoked = true
    put_invite(e.invite_id, invite)
  end
  if mode == 'reapply' then
    local fields = { invite_id = e.invite_id }
    if t == 'invite_created' then
      fields = { invite_id = e.invite_id, priority = e.priority, uses = e.uses,
                 expires_at = e.expires_at or 0 }
    end
    emit(load_cfg().inc, t, nil, fields, at)
  end
  return true
end

local function apply_pace(e, at)
  if e.auto_release then
    redis.call('HSET', K_STATS, 'pace', tostring(e.pace))
  else
    redis.call('HDEL', K_STATS, 'pace')
  end
  if mode == 'reapply' then
    emit(load_cfg().inc, 'pace_changed', nil,
         { pace = e.pace, auto_release = e.auto_release, release_rate = e.release_rate,
           target_latency_ms = e.target_latency_ms, site_p95_ms = e.site_p95_ms,
           reports = e.reports }, at)
  end
  return true
end

-- true applied, false skipped (does not fit), 'orphan' (names an unknown place), or nil
-- and a stop reason to stop the run
local function apply(e)
  local t = e.type
  local at = math.floor(e.ts * 1000 + 0.5)
  if t == 'room_updated' then
    return apply_room_updated(e, at)
  end
  if mode == 'reapply' and not load_cfg() then
    return false
  end
  if t == 'line_opened' or t == 'prequeue_placed' then
    return apply_opening(e, t)
  elseif t == 'invite_created' or t == 'invite_revoked' then
    return apply_invite(e, t, at)
  elseif t == 'pace_changed' then
    return apply_pace(e, at)
  elseif t == 'room_deleted' then
    local cfg = load_cfg()
    if mode == 'reapply' then
      emit(cfg.inc, 'room_deleted', nil, {}, at)
    end
    wipe_room(cfg and cfg.inc or string.match(e.id, '^.+:(.-):%d+$'))
    return true
  elseif t == 'enqueued' then
    return apply_enqueued(e, at)
  end
  local p = get_person(e.position_id)
  if not p then
    if mode == 'strict' then
      return nil, { kind = 'unknown_place', id = e.id, seq = e.seq }
    end
    result.orphans = result.orphans + 1
    return 'orphan'
  end
  local done = apply_to_place(e, t, p, at)
  if done == nil then
    return nil, { kind = 'unknown_type', id = e.id, seq = e.seq, type = tostring(t) }
  end
  return done
end

-- the room's event counter, read once: only this loop moves it (wipe_room keeps it; emit
-- moves it only in 'reapply', which does not look at it); written once after the loop, with
-- the joins' counters, even when the loop fails part way (a store error), so the counters
-- always say what was applied
local have = tonumber(redis.call('HGET', K_STATS, 'event_seq') or '0')
local written = have
defer_join_stats()
local function apply_all()
  for i = 3, #ARGV do
    local e = cjson.decode(ARGV[i])
    local seq = tonumber(e.seq)
    if mode ~= 'reapply' and seq <= have then
      result.skipped = result.skipped + 1
    else
      if mode ~= 'reapply' and seq > have + 1 then
        if mode == 'strict' then
          result.stop = { kind = 'gap', after = have, next = seq, id = e.id }
          return
        end
        result.gaps[#result.gaps + 1] = { after = have, next = seq }
      end
      local done, stop = apply(e)
      if stop then
        result.stop = stop
        return
      end
      if mode ~= 'reapply' then
        have = seq
      end
      if done == true then
        result.applied = result.applied + 1
      elseif done == 'orphan' then
        result.skipped = result.skipped + 1
      elseif mode == 'reapply' then
        result.skipped = result.skipped + 1
      else
        result.conflicts = result.conflicts + 1
      end
    end
  end
end
local ok, err = pcall(apply_all)
write_join_stats()
if have ~= written then
  redis.call('HSET', K_STATS, 'event_seq', have)
end
if not ok then
  error(err, 0)
end
return cjson.encode(result)
