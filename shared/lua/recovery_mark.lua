-- Mark a room as being rebuilt (every other change is refused with room_recovering) or lift
-- the mark. ARGV: room, on ('1' or '0'), owner ('recover' or 'relay'), take ('1': take a
-- mark another owner holds). A mark is held by one owner at a time, so `waitroom recover`
-- and a relay catching the room up never rebuild it at once. Answers 'ok', or the owner
-- that holds the mark.
local on, owner, take = ARGV[2], ARGV[3], ARGV[4]
local current = redis.call('HGET', K_STATS, 'recovering')
if current and current ~= owner and current ~= '1' and take ~= '1' then
  return current
end
if on == '1' then
  redis.call('HSET', K_STATS, 'recovering', owner)
elseif current then
  redis.call('HDEL', K_STATS, 'recovering')
end
return 'ok'
