-- Remove a room and all its state. The outbox stays until the relay has delivered the
-- final room_deleted event; the event counter stays so seq keeps rising. ARGV: room
local cfg = load_cfg()
if not cfg then
  return fail('room_not_found')
end
emit(cfg.inc, 'room_deleted', nil, {}, now_ms())
wipe_room(cfg.inc)
return 1
