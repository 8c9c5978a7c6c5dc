-- Room leases with fencing tokens. ARGV: room, op, role, holder, lease_ms, fence
-- acquire: take the lease if free (a new fence from the room's counter) or renew it if
-- this holder has it; answers the fence, or, when another replica holds it, minus the
-- milliseconds its lease has left (at least 1), so the caller knows when to ask again.
-- release: drop it only if this holder still has it with this fence.
local op, role, holder = ARGV[2], ARGV[3], ARGV[4]
local key = K_LEASE[role]
if not key then
  return fail('bad_role')
end
local current = redis.call('GET', key)
if op == 'acquire' then
  if current == false then
    local fence = redis.call('HINCRBY', K_STATS, 'fence', 1)
    redis.call('SET', key, holder .. ':' .. fence, 'PX', tonumber(ARGV[5]))
    return fence
  end
  local prefix = holder .. ':'
  if string.sub(current, 1, #prefix) == prefix then
    redis.call('PEXPIRE', key, tonumber(ARGV[5]))
    return tonumber(string.sub(current, #prefix + 1))
  end
  return -math.max(redis.call('PTTL', key), 1)
elseif op == 'release' then
  if current == holder .. ':' .. ARGV[6] then
    redis.call('DEL', key)
    return 1
  end
  return 0
end
return fail('bad_op')
