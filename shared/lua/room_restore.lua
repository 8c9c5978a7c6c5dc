-- Start rebuilding a room: its state goes (the outbox, the lease fences and the deleted
-- incarnations stay), the room is marked recovering, and, given a snapshot
-- (room_snapshot.lua's answer), the state is put back as it was at the snapshot's seq.
-- ARGV: room, snapshot_json ('' for none: the room starts from nothing, event counter 0)
-- read and checked before anything goes: a snapshot this cannot read, or of a later
-- version, changes nothing (snapshot_unreadable, snapshot_too_new)
local snap = nil
if ARGV[2] ~= '' then
  local read, decoded = pcall(cjson.decode, ARGV[2])
  if not read or type(decoded) ~= 'table' then
    return fail('snapshot_unreadable')
  end
  if (tonumber(decoded.v) or 0) > SCHEMA_VERSION then
    return fail('snapshot_too_new')
  end
  if type(decoded.cfg) ~= 'table' or type(decoded.stats) ~= 'table'
      or tonumber(decoded.seq) == nil then
    return fail('snapshot_unreadable')
  end
  for _, name in ipairs({'people', 'line', 'admitted', 'active', 'ended', 'pow', 'ips',
                         'prequeue', 'invites'}) do
    local flat = decoded[name]
    if flat == nil and (name == 'prequeue' or name == 'invites') then
      flat = {}  -- (snapshots from before pre-queues and invites)
    end
    if type(flat) ~= 'table' or #flat % 2 ~= 0 then
      return fail('snapshot_unreadable')
    end
    for i = 1, #flat do  -- (a null or a table would fail half way through the writes)
      local kind = type(flat[i])
      if kind ~= 'string' and kind ~= 'number' then
        return fail('snapshot_unreadable')
      end
    end
  end
  snap = decoded
end
local kept = redis.call('HMGET', K_STATS, 'fence', 'gone', 'recovering')
redis.call('DEL', K_CFG, K_STATS, K_LINE, K_SEEN, K_PEOPLE, K_ADMITTED, K_ACTIVE, K_IPS,
           K_ENDED, K_POW, K_INVITES, K_PREQUEUE)
forget_room_incarnation()
redis.call('HSET', K_STATS, 'recovering', kept[3] or '1', 'event_seq', '0',
           'fence', kept[1] or '0', 'gone', kept[2] or '')
if snap == nil then
  return 0
end
local now = now_ms()

-- a flat list (name, value, ...) written in slices: Lua's unpack has a limit
local function put_flat(cmd, key, flat, swap, also)
  local CHUNK = 2000
  for i = 1, #flat, CHUNK do
    local args = {}
    for j = i, math.min(i + CHUNK - 1, #flat), 2 do
      if swap then
        args[#args + 1] = flat[j + 1]
        args[#args + 1] = flat[j]
      else
        args[#args + 1] = flat[j]
        args[#args + 1] = flat[j + 1]
      end
      if also then
        also(flat[j])
      end
    end
    if #args > 0 then
      redis.call(cmd, key, unpack(args))
    end
  end
end

put_flat('HSET', K_CFG, config_flat(snap.cfg))
forget_room_incarnation()
local stats_flat = {}
for name, value in pairs(snap.stats) do
  if name ~= 'gone' or value ~= '0' then
    stats_flat[#stats_flat + 1] = name
    stats_flat[#stats_flat + 1] = tostring(value)
  end
end
put_flat('HSET', K_STATS, stats_flat)
put_flat('HSET', K_PEOPLE, snap.people)
local seen = {}
put_flat('ZADD', K_LINE, snap.line, true, function(position_id)
  seen[#seen + 1] = now
  seen[#seen + 1] = position_id
end)
put_flat('ZADD', K_SEEN, seen)
put_flat('ZADD', K_ADMITTED, snap.admitted, true)
put_flat('ZADD', K_ACTIVE, snap.active, true)
put_flat('ZADD', K_ENDED, snap.ended, true)
put_flat('ZADD', K_POW, snap.pow, true)
put_flat('HSET', K_IPS, snap.ips)
-- the pre-queue's people are seen afresh too, so the silent among them expire
put_flat('ZADD', K_PREQUEUE, snap.prequeue or {}, true, function(position_id)
  redis.call('ZADD', K_SEEN, now, position_id)
end)
put_flat('HSET', K_INVITES, snap.invites or {})
return tonumber(snap.seq)
