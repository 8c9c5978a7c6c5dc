-- Mark a room as being rebuilt ('1': every other change is refused with room_recovering)
-- or lift the mark ('0'). ARGV: room, on
if ARGV[2] == '1' then
  redis.call('HSET', K_STATS, 'recovering', '1')
else
  redis.call('HDEL', K_STATS, 'recovering')
end
return 1
